// What a pruning run tells a person: the --json object (decisions, every layer's score at every decision,
// compensation, losses, timings), the report file with the command line and calibration set, and a chart.

public struct PruningResult: Sendable {
    public var metric: String
    public var decisions: [Decision]
    public var compensation: CompensationReport?
    public var calibLossOriginal: Double
    public var calibLossPruned: Double
    public var calibLossCompensated: Double?
    public var scoringSeconds: Double
    public var compensationSeconds: Double
    public var writingSeconds: Double

    public init(
        metric: String, decisions: [Decision], compensation: CompensationReport?, calibLossOriginal: Double,
        calibLossPruned: Double, calibLossCompensated: Double?, scoringSeconds: Double, compensationSeconds: Double,
        writingSeconds: Double
    ) {
        self.metric = metric; self.decisions = decisions; self.compensation = compensation
        self.calibLossOriginal = calibLossOriginal; self.calibLossPruned = calibLossPruned
        self.calibLossCompensated = calibLossCompensated; self.scoringSeconds = scoringSeconds
        self.compensationSeconds = compensationSeconds; self.writingSeconds = writingSeconds
    }

    static func number(_ x: Double) -> JSONValue { x.isNaN ? .null : .double(x) }

    /// The object `prune --json` prints, in the documented key order.
    public var json: JSONValue {
        var comp: JSONValue = .null
        if let c = compensation, let layer = c.layer {
            comp = .object([
                ("layer", .int(layer)), ("shifts", .array(c.shifts.map { .double($0.1) })),
                ("recon_error_before", PruningResult.number(c.reconBefore)),
                ("recon_error_after", PruningResult.number(c.reconAfter)), ("ridge", PruningResult.number(c.alpha)),
            ])
        }
        return .object([
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
        ])
    }

    /// The compensation in full: every σ with its layer, every candidate tried and its validation loss.
    public var compensationDetail: JSONValue {
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

    public var decisionDetail: JSONValue {
        .array(decisions.map { d in
            .object([
                ("step", .int(d.step)), ("removed", .int(d.removed)), ("score", PruningResult.number(d.score)),
                ("seconds", .double(d.seconds)),
                ("verified", .array(d.verified.map { .object([("layer", .int($0.0)), ("calib_loss", .double($0.1))]) })),
            ])
        })
    }
}
