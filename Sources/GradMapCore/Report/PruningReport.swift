// What a pruning job tells a person: one result (decisions, every layer's score at every decision,
// compensation, losses, held-out perplexities, windows, timings, ranks), serialised once: `prune --json`
// prints it and pruning_report.json holds it. A chart of the scores goes beside it (ScoreChart).

/// Held-out perplexities of the model at each stage of the job, on the same windows.
public struct HeldOutResult: Sendable {
    /// Window indices in the held-out stream.
    public let windows: [Int]
    public let seqLen: Int
    /// ("original" | "pruned" | "compensated", perplexity), in the order measured.
    public var perplexities: [(String, Double)] = []
}

public struct PruningResult: Sendable {
    /// The metric's name, or "given" when the layers were given.
    public var metric: String
    /// The command that ran the job, as typed (the front end's).
    public var command: String
    public var seqLen: Int
    public var seed: UInt64
    public var matmul: MatmulPrecision
    public var calibrationWindows: [Int]
    public var validationWindows: [Int]
    public var decisions: [Decision] = []
    public var compensation: CompensationReport? = nil
    public var calibLossOriginal = Double.nan
    public var calibLossPruned = Double.nan
    public var calibLossCompensated: Double? = nil
    public var heldOut: HeldOutResult? = nil
    public var scoringSeconds = 0.0
    public var compensationSeconds = 0.0
    /// Writing the tensors (the report is written after them).
    public var writingSeconds = 0.0
    public var totalSeconds = 0.0
    /// Per rank: timings, bytes sent, peak memory (Pipeline.gatherRankStats).
    public var ranks: [JSONValue] = []

    static func number(_ x: Double) -> JSONValue { x.isNaN ? .null : .double(x) }

    /// The result in the documented key order: what `prune --json` prints and pruning_report.json holds.
    public var json: JSONValue {
        var comp: JSONValue = .null
        if let c = compensation, let layer = c.layer {
            comp = .object([
                ("layer", .int(layer)), ("shifts", .array(c.shifts.map { .double($0.1) })),
                ("recon_error_before", PruningResult.number(c.reconBefore)),
                ("recon_error_after", PruningResult.number(c.reconAfter)), ("ridge", PruningResult.number(c.alpha)),
            ])
        }
        var fields: [(String, JSONValue)] = [
            ("command", .string(command)),
            ("metric", .string(metric)),
            ("removed", .array(decisions.map { .int($0.removed) })),
            ("scores", .array(decisions.map { d in .array(d.scores.map(PruningResult.number)) })),
            ("compensation", comp),
            ("calib_loss", .object([
                ("original", .double(calibLossOriginal)), ("pruned", .double(calibLossPruned)),
                ("compensated", calibLossCompensated.map { .double($0) } ?? .null),
            ])),
            ("seconds", .object([
                ("scoring", .double(scoringSeconds)), ("compensation", .double(compensationSeconds)),
                ("writing", .double(writingSeconds)),
            ])),
            ("seq_len", .int(seqLen)), ("seed", .uint(seed)), ("matmul", .string(matmul.rawValue)),
            ("calibration_windows", .array(calibrationWindows.map { .int($0) })),
            ("validation_windows", .array(validationWindows.map { .int($0) })),
            ("decisions", decisionDetail), ("compensation_detail", compensationDetail),
            ("total_seconds", .double(totalSeconds)), ("ranks", .array(ranks)),
        ]
        if let heldOut {
            let ppl = heldOut.perplexities.map { ("ppl_" + $0.0, JSONValue.double($0.1)) }
            fields.append(("eval", .object([
                ("windows", .int(heldOut.windows.count)), ("window_indices", .array(heldOut.windows.map { .int($0) })),
            ] + ppl)))
        }
        return .object(fields)
    }

    /// The compensation in full: every σ with its layer, every candidate tried and its validation loss.
    var compensationDetail: JSONValue {
        guard let c = compensation else { return .null }
        return .object([
            ("chosen_layer", c.layer.map { .int($0) } ?? .null),
            ("shifts", .array(c.shifts.map { .object([("layer", .int($0.0)), ("sigma", .double($0.1))]) })),
            ("alpha", PruningResult.number(c.alpha)), ("lambda", PruningResult.number(c.lambda)),
            ("ridge_raised", .bool(c.ridgeRaised)),
            ("baseline_validation_loss", c.baselineValidationLoss.map { .double($0) } ?? .null),
            ("candidates", .array(c.candidates.map { k in
                .object([
                    ("layer", .int(k.layer)), ("alpha", .double(k.alpha)), ("lambda", .double(k.lambda)),
                    ("validation_loss", k.validationLoss.map { .double($0) } ?? .null),
                    ("recon_error_before", PruningResult.number(k.reconBefore)),
                    ("recon_error_after", PruningResult.number(k.reconAfter)),
                ])
            })),
        ])
    }

    var decisionDetail: JSONValue {
        .array(decisions.map { d in
            .object([
                ("step", .int(d.step)), ("removed", .int(d.removed)), ("score", PruningResult.number(d.score)),
                ("seconds", .double(d.seconds)),
                ("verified", .array(d.verified.map { .object([("layer", .int($0.0)), ("calib_loss", .double($0.1))]) })),
            ])
        })
    }
}

/// One decision's scores on the unpruned model (`score`).
public struct ScoreResult: Sendable {
    public let metric: Metric
    /// Per original layer (angular: per block start); NaN where not scored.
    public let scores: [Double]
    public let calibrationWindows: [Int]
    public let seconds: Double

    public var json: JSONValue {
        .object([
            ("metric", .string(metric.rawValue)),
            ("scores", .array(scores.map(PruningResult.number))),
            ("calibration_windows", .array(calibrationWindows.map { .int($0) })), ("seconds", .double(seconds)),
        ])
    }
}
