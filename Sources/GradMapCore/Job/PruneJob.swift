// A pruning job: its configuration (every setting with its one default and one validation) and the job that
// owns the token windows, the held-out evaluations, the timings and the result. Front ends fill a
// PruneConfig, set `progress`, and print what run() or score() returns.
import Foundation
import GradMapCompensation
import GradMapData
import GradMapFormats
import GradMapPruning
import GradMapReport
import GradMapRuntime
import GradMapSupport
import GradMapWriter

public struct PruneConfig: Sendable {
    public var engine: EngineConfig
    public var calibration: TokenInput
    /// Calibration windows, spread evenly over the token stream (method.md).
    public var calibWindows = 32
    /// How decisions are taken and checked, and the compensation (PruneOptions has their defaults).
    public var decisions = PruneOptions()
    /// Validation windows for the auto compensation, spread over the windows the calibration left; nil:
    /// max(1, calibWindows / 8).
    public var validationWindows: Int? = nil
    /// Held-out text or ids: perplexity before pruning, after, and after compensation.
    public var heldOut: TokenInput? = nil
    /// Held-out windows spread evenly over the stream; nil: all.
    public var evalWindows: Int? = nil
    /// Evaluate the unpruned model too (skip it when it is known already).
    public var evaluateOriginal = true
    /// Evaluate the pruned model before its compensation (skip it when another run of the same layers has).
    public var evaluatePruned = true
    /// score(): the layers (original indices) already removed from the model whose decision is scored.
    public var scoredWithout: [Int] = []
    /// The pruned checkpoint's folder, or a .gguf file from a GGUF model (PrunedOutput; run() only).
    public var out: String? = nil
    /// A GGUF out's compensated ffn_down: F16 or re-quantised to its source type; nil: F16.
    public var ggufDown: GGUFDownStorage? = nil
    /// Replace an existing `out`.
    public var force = false
    /// Continue a job that stopped: replay the decisions journaled in out's partial folder (DecisionJournal).
    public var resume = false
    /// The command line, recorded in the report.
    public var command = ""

    public init(engine: EngineConfig, calibration: TokenInput) {
        self.engine = engine
        self.calibration = calibration
    }

    /// Every default, for front ends that show them (the model and data left empty).
    public static let defaults = PruneConfig(engine: EngineConfig(model: "", seqLen: 2), calibration: .tokens(""))

    /// The checks that need no file; the ones against the model's layer count are Pruner.validate's.
    public func validate() throws {
        try engine.validate()
        guard calibWindows >= 1 else { throw bad(.calibWindows, calibWindows, "must be at least 1") }
        if let n = evalWindows, n < 1 { throw bad(.evalWindows, n, "must be at least 1") }
        if let v = validationWindows, v < 1 { throw bad(.validationWindows, v, "must be at least 1") }
    }

    /// score()'s removed layers against the model: in range, once each, leaving a layer to score.
    func validateScoredWithout(layers l: Int) throws {
        guard !scoredWithout.isEmpty else { return }
        for x in scoredWithout where x < 0 || x >= l {
            throw bad(.without, nil, "layer \(x) is out of range; the model has layers 0..\(l - 1)")
        }
        if let dup = scoredWithout.first(where: { x in scoredWithout.filter { $0 == x }.count > 1 }) {
            throw bad(.without, nil, "layer \(dup) is given twice")
        }
        let removable = (decisions.protectFirst..<max(decisions.protectFirst, l - decisions.protectLast)).filter { !scoredWithout.contains($0) }
        guard !removable.isEmpty else { throw bad(.without, nil, "no layer is left that a decision may remove") }
    }

    /// Whether the decisions need a backward pass.
    var training: Bool { decisions.layers == nil && decisions.metric.needsBackward }
}

public final class PruneJob {
    public let config: PruneConfig
    let world: Communicator
    public let checkpoint: Checkpoint
    let data: TokenWindows
    public let calibration: [Int]
    public let validation: [Int]
    let heldOut: (data: TokenWindows, windows: [Int])?
    let started: DispatchTime
    /// A journal an earlier run left that this one, not resuming, removed (told on rank 0).
    let discardedJournal: Bool
    /// Receives progress lines, on rank 0 only.
    public var progress: ((String) -> Void)?

    /// Checks the configuration against the checkpoint and reads the windows, under Communicator.agree: bad
    /// input found here is one line for the job, before anything is loaded or written.
    public init(config: PruneConfig, world: Communicator) throws {
        started = DispatchTime.now()
        self.config = config
        self.world = world
        typealias SetUp = (Checkpoint, TokenWindows, [Int], [Int], (data: TokenWindows, windows: [Int])?, Bool)
        (checkpoint, data, calibration, validation, heldOut, discardedJournal) = try world.agree { () -> SetUp in
            try config.validate()
            let ckpt = try Checkpoint(path: config.engine.model)
            try Pruner.validate(config.decisions, layers: ckpt.config.layers)
            try config.validateScoredWithout(layers: ckpt.config.layers)
            var discarded = false
            if let out = config.out {
                discarded = try PrunedOutput(out).check(
                    force: config.force, source: ckpt, down: config.ggufDown, compensating: config.decisions.compensateAt != nil,
                    keepJournal: config.resume)
            }
            if config.resume && (config.out == nil || config.decisions.layers != nil) {
                throw bad(.resume, nil, "only a pruning job that scores its decisions journals them (given layers need none)")
            }
            let data = try config.calibration.windows(seqLen: config.engine.seqLen, model: ckpt)
            let calib = try data.spreadWindows(config.calibWindows, field: .calibWindows)
            let validation = config.decisions.compensateAt == .auto ? try PruneJob.validation(config, data, calib: calib) : []
            var heldOut: (data: TokenWindows, windows: [Int])? = nil
            if let input = config.heldOut {
                let d = try input.windows(seqLen: config.engine.seqLen, model: ckpt)
                heldOut = (d, try d.spreadWindows(min(config.evalWindows ?? d.windowCount, d.windowCount), field: .evalWindows))
            }
            try config.engine.checkLayout(ckpt, ranks: world.size)
            return (ckpt, data, calib, validation, heldOut, discarded)
        }
    }

    /// The decisions an earlier run journaled (when resuming; checked against this job's fingerprint, one line
    /// for the job if it differs), else a new journal started by rank 0. Only scored decisions are journaled:
    /// given layers cost nothing to take again.
    func openJournal(_ output: PrunedOutput) throws -> [Decision] {
        guard config.decisions.layers == nil else { return [] }
        let fingerprint = try DecisionJournal.fingerprint(self)
        return try world.agree {
            if config.resume {
                return try DecisionJournal.read(output.journal, expecting: fingerprint, layers: checkpoint.config.layers)
            }
            if world.rank == 0 {
                try output.prepareJournal()
                try DecisionJournal.start(output.journal, fingerprint)
            }
            return []
        }
    }

    /// The validation windows: spread over the windows the calibration left.
    static func validation(_ config: PruneConfig, _ data: TokenWindows, calib: [Int]) throws -> [Int] {
        let rest = Array(Set(0..<data.windowCount).subtracting(calib)).sorted()
        let v = config.validationWindows ?? max(1, config.calibWindows / 8)
        guard v <= rest.count else {
            throw bad(.validationWindows, v, "only \(rest.count) windows are left after the \(calib.count) calibration windows of \(data.path)")
        }
        return (0..<v).map { rest[$0 * rest.count / v] }
    }

    func log(_ line: String) {
        if world.rank == 0 { progress?(line) }
    }

    func pruner(training: Bool) throws -> Pruner {
        let microBatch = min(config.decisions.microBatch, calibration.count)
        let pipeline = try config.engine.pipeline(world, checkpoint, microBatch: microBatch, training: training)
        return try Pruner(pipeline: pipeline, data: data, calibration: calibration, validation: validation, options: config.decisions)
    }

    /// One decision's scores on the unpruned model, or on the model without `scoredWithout`, and the layer
    /// (angular: the block start) that decision removes without verification.
    public func score() throws -> ScoreResult {
        let pruner = try pruner(training: config.decisions.metric.needsBackward)
        for layer in config.scoredWithout { pruner.remove(layer) }
        let t0 = DispatchTime.now()
        let scores = try pruner.scoreOnce()
        let choice = try pruner.lowestScored(scores)
        return ScoreResult(metric: config.decisions.metric, scores: scores, choice: choice, without: config.scoredWithout,
                           calibrationWindows: calibration, seconds: elapsed(since: t0))
    }

    /// The decisions, the compensation and the pruned checkpoint with its report (complete on rank 0).
    public func run() throws -> PruningResult {
        guard let out = config.out else { throw bad(.out, nil, "a pruning job needs an output folder") }
        let options = config.decisions
        let pruner = try pruner(training: config.training)
        pruner.progress = { [weak self] in self?.log($0) }
        let seqLen = config.engine.seqLen
        var result = PruningResult(
            metric: options.layers == nil ? options.metric.rawValue : "given", command: config.command, seqLen: seqLen,
            seed: options.seed, matmul: config.engine.matmul, calibrationWindows: calibration, validationWindows: validation)
        result.model = URL(fileURLWithPath: checkpoint.path).lastPathComponent
        result.loadSeconds = elapsed(since: started)
        if let (_, windows) = heldOut { result.heldOut = HeldOutResult(windows: windows, seqLen: seqLen) }
        // The progress lines' time left: every forward pass below is timed into the clock.
        let clock = JobClock(plan: PrunePlan(
            layers: checkpoint.config.layers, remove: options.layers?.count ?? options.remove, calibrationWindows: calibration.count,
            validationWindows: validation.count, heldOutWindows: heldOut?.windows.count, compensation: options.compensateAt),
            rate: ForwardRate(config: checkpoint.config, seqLen: seqLen))
        let removed = { Set(0..<self.checkpoint.config.layers).subtracting(pruner.kept) }
        func left(from step: JobStep) -> String { clock.left(from: step, removed: removed()) }
        pruner.timeLeft = { clock.secondsLeft(from: .prunedLoss, removed: removed(), decisions: $0, secondsEach: $1) }
        defer { pruner.timeLeft = nil }
        func timedLoss(adding sums: HiddenSums? = nil) throws -> Double {
            try clock.time(windows: calibration.count, layers: pruner.kept.count) { try pruner.loss(adding: sums) }.0
        }
        func evaluate(_ label: String, then next: JobStep? = nil) throws {
            guard let (evalData, evalList) = heldOut else { return }
            // The current model: the original before the decisions, then the pruned one.
            let (r, seconds) = try clock.time(windows: evalList.count, layers: pruner.kept.count) {
                try pruner.pipeline.run(data: evalData, windows: evalList, microBatch: options.microBatch, pass: pruner.pass())
            }
            result.heldOut?.record(label, r)
            result.evaluationSeconds += seconds
            let (lo, hi) = meanInterval(r.windowLosses).expInterval
            log(String(format: "held-out perplexity %@: %.3f [95%% %.3f, %.3f] (%d windows of %d tokens, %.1f s)%@", label, exp(r.loss),
                       lo, hi, evalList.count, seqLen, seconds, next.map(left(from:)) ?? ""))
        }
        let output = PrunedOutput(out)
        if discardedJournal {
            log("note: removed the decision journal an earlier run left, \(output.journal) (--resume continues such a job instead)")
        }
        let journaled = try openJournal(output)
        if config.evaluateOriginal { try evaluate("original") }
        // The compensation's layer means come from the two calibration-loss passes the job runs anyway.
        let means = options.compensateAt != nil ? CompensationMeans(checkpoint.config) : nil
        result.calibLossOriginal = try timedLoss(adding: means?.original)
        log(String(format: "calibration: %d windows of %d tokens; loss %.6f (ppl %.3f) before pruning", calibration.count, seqLen,
                   result.calibLossOriginal, exp(result.calibLossOriginal)))
        let t0 = DispatchTime.now()
        result.decisions = try pruner.decide(resuming: journaled) { d in
            if self.world.rank == 0 && options.layers == nil { try DecisionJournal.append(output.journal, d) }
        }
        result.scoringSeconds = elapsed(since: t0)
        result.calibLossPruned = try timedLoss(adding: means?.pruned)
        let next: JobStep? = options.compensateAt != nil ? .compensation : nil
        log(String(format: "pruned: loss %.6f (ppl %.3f)%@", result.calibLossPruned, exp(result.calibLossPruned),
                   heldOut != nil || next != nil ? left(from: .prunedEval) : ""))
        if config.evaluatePruned { try evaluate("pruned", then: next) }
        let down = config.ggufDown ?? .f16
        let dtype = PrunedWriter.outputDType(checkpoint)
        let storage = output.storage(folder: dtype, down: down)
        if let target = options.compensateAt {
            let t1 = DispatchTime.now()
            // The decisions are the same on every rank, so is this bad input: one line for the job.
            if case .layer(let j) = target {
                try world.agree { guard pruner.kept.contains(j) else { throw bad(.compensateAt, j, "layer \(j) was removed") } }
            }
            let comp = try pruner.compensate(target: target, storage: storage, means: means)
            // Fitting and folding alone: the compensated model's calibration loss is a measurement, like the
            // pruned one (neither is the compensation's or the scoring's), and its evaluation is evaluation.
            result.compensationSeconds = elapsed(since: t1)
            result.compensation = comp
            if let j = comp.layer {
                let loss = try timedLoss()
                result.calibLossCompensated = loss
                log(String(format: "compensated at layer %d: loss %.6f (ppl %.3f)%@", j, loss, exp(loss),
                           heldOut != nil ? left(from: .compensatedEval) : ""))
                try evaluate("compensated")
            } else {
                log("compensation: no candidate lowered the validation loss beyond its 95 % interval; none applied")
            }
        }
        result.ranks = try pruner.pipeline.gatherRankStats()
        let t2 = DispatchTime.now()
        try output.write(
            pipeline: pruner.pipeline, source: checkpoint, kept: pruner.kept, dtype: dtype, compensated: result.compensation?.layer,
            down: down, force: config.force
        ) {
            // Rank 0, after the tensors: the report holds the time they took.
            result.writingSeconds = elapsed(since: t2)
            result.totalSeconds = elapsed(since: self.started)
            return [
                "pruning_report.json": Data(result.reportJSON.render(indent: 2).utf8),
                "pruning_report.svg": Data(ReportSVG.svg(result).utf8),
            ]
        }
        if case .gguf = output {  // no report in a GGUF: its times are measured here, for --json
            result.writingSeconds = elapsed(since: t2)
            result.totalSeconds = elapsed(since: started)
        }
        log(String(format: "wrote %@ (%.1f s in all)", out, elapsed(since: started)))
        return result
    }
}
