// What a pruning job tells a person: one result (decisions, every layer's score at every decision,
// compensation, losses, held-out perplexities, windows, timings, ranks), serialised once: `prune --json`
// prints it and pruning_report.json holds it with the per-window held-out losses besides. A picture of it
// goes beside it (ReportSVG).
import Foundation
import GradMapCompensation
import GradMapEngine
import GradMapKernels
import GradMapPruning
import GradMapSupport

/// Held-out perplexities of the model at each stage of the job, on the same windows.
public struct HeldOutResult: Sendable {
    /// Window indices in the held-out stream.
    public let windows: [Int]
    public let seqLen: Int
    /// ("original" | "pruned" | "compensated", perplexity), in the order measured.
    public var perplexities: [(String, Double)] = []
    /// Each stage's per-window mean NLLs, in the order of `windows` (the samples of the intervals).
    public var windowLosses: [String: [Double]] = [:]

    public init(windows: [Int], seqLen: Int) {
        self.windows = windows
        self.seqLen = seqLen
    }

    /// The stage's perplexity and its per-window losses.
    public mutating func record(_ label: String, _ loss: LossResult) {
        perplexities.append((label, exp(loss.loss)))
        windowLosses[label] = loss.windowLosses
    }

    /// The `eval` object: windows, every perplexity with its 95 % interval, the paired differences
    /// pruned − original and compensated − pruned; with `windowLosses`, the samples too (the report file's).
    func json(windowLosses withLosses: Bool) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("windows", .int(windows.count)), ("window_indices", .array(windows.map { .int($0) })),
        ]
        for (label, ppl) in perplexities {
            fields.append(("ppl_" + label, .double(ppl)))
            fields.append(("ppl_\(label)_interval", PruningResult.interval(meanInterval(windowLosses[label]!).expInterval)))
        }
        for (b, a) in [("pruned", "original"), ("compensated", "pruned")] {
            guard let lb = windowLosses[b], let la = windowLosses[a] else { continue }
            let d = pairedInterval(la, lb)
            fields.append(("\(b)_vs_\(a)", .object([
                ("loss_diff", .double(d.mean)), ("loss_diff_interval", PruningResult.interval((d.lo, d.hi))),
                ("ppl_ratio", .double(exp(d.mean))), ("ppl_ratio_interval", PruningResult.interval(d.expInterval)),
            ])))
        }
        if withLosses {
            fields.append(("window_losses", .object(perplexities.map { p in
                (p.0, JSONValue.array(windowLosses[p.0]!.map { .double($0) }))
            })))
        }
        return .object(fields)
    }
}

public struct PruningResult: Sendable {
    /// The metric's name, or "given" when the layers were given.
    public var metric: String
    /// The command that ran the job, as typed (the front end's).
    public var command: String
    /// The model's file or folder name (the picture's title).
    public var model = ""
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
    /// Reading the model and the windows, loading the stages.
    public var loadSeconds = 0.0
    public var scoringSeconds = 0.0
    /// Fitting and folding (Compensation.run): not the compensated calibration loss, nor its evaluation.
    public var compensationSeconds = 0.0
    /// Every held-out evaluation.
    public var evaluationSeconds = 0.0
    /// Writing the tensors (the report is written after them).
    public var writingSeconds = 0.0
    public var totalSeconds = 0.0
    /// Per rank: timings, bytes sent, peak memory (Pipeline.gatherRankStats).
    public var ranks: [JSONValue] = []

    package init(
        metric: String, command: String, seqLen: Int, seed: UInt64, matmul: MatmulPrecision, calibrationWindows: [Int],
        validationWindows: [Int]
    ) {
        self.metric = metric; self.command = command; self.seqLen = seqLen; self.seed = seed; self.matmul = matmul
        self.calibrationWindows = calibrationWindows; self.validationWindows = validationWindows
    }

    package static func number(_ x: Double) -> JSONValue { x.isNaN ? .null : .double(x) }
    /// [lo, hi]; null bounds where there is no spread to estimate (one window).
    package static func interval(_ b: (Double, Double)) -> JSONValue { .array([number(b.0), number(b.1)]) }

    /// The result in the documented key order: what `prune --json` prints.
    public var json: JSONValue { json(windowLosses: false) }
    /// What pruning_report.json holds: `json` with every held-out window's loss (eval.window_losses), so that
    /// scripts can pair settings across runs.
    public var reportJSON: JSONValue { json(windowLosses: true) }

    func json(windowLosses: Bool) -> JSONValue {
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
                ("load", .double(loadSeconds)), ("scoring", .double(scoringSeconds)),
                ("compensation", .double(compensationSeconds)), ("evaluation", .double(evaluationSeconds)),
                ("writing", .double(writingSeconds)),
            ])),
            ("seq_len", .int(seqLen)), ("seed", .uint(seed)), ("matmul", .string(matmul.rawValue)),
            ("calibration_windows", .array(calibrationWindows.map { .int($0) })),
            ("validation_windows", .array(validationWindows.map { .int($0) })),
            ("decisions", decisionDetail), ("compensation_detail", compensationDetail),
            ("total_seconds", .double(totalSeconds)), ("ranks", .array(ranks)),
        ]
        if let heldOut { fields.append(("eval", heldOut.json(windowLosses: windowLosses))) }
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
            ("baseline_validation_window_losses", c.baselineValidationWindowLosses.map { .array($0.map { .double($0) }) } ?? .null),
            ("seconds", .object(c.seconds.map { ($0.0, .double($0.1)) })),
            ("validation_heads_on_first_stage", .int(c.validationHeadsOnFirstStage)),
            ("candidates", .array(c.candidates.map { k in
                .object([
                    ("layer", .int(k.layer)), ("alpha", .double(k.alpha)), ("lambda", .double(k.lambda)),
                    ("validation_loss", k.validationLoss.map { .double($0) } ?? .null),
                    ("validation_window_losses", k.validationWindowLosses.map { .array($0.map { .double($0) }) } ?? .null),
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
    /// The layer this decision removes without verification (angular: the block start).
    public let choice: Int
    /// The layers already removed from the scored model (original indices).
    public let without: [Int]
    public let calibrationWindows: [Int]
    public let seconds: Double

    package init(metric: Metric, scores: [Double], choice: Int, without: [Int], calibrationWindows: [Int], seconds: Double) {
        self.metric = metric; self.scores = scores; self.choice = choice; self.without = without
        self.calibrationWindows = calibrationWindows; self.seconds = seconds
    }

    public var json: JSONValue {
        .object([
            ("metric", .string(metric.rawValue)),
            ("scores", .array(scores.map(PruningResult.number))), ("choice", .int(choice)),
            ("without", .array(without.map { .int($0) })),
            ("calibration_windows", .array(calibrationWindows.map { .int($0) })), ("seconds", .double(seconds)),
        ])
    }
}
