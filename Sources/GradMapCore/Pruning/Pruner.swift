// Stage 1 of GradMAP: K removal decisions on the current model. Iterative metrics score the model as it is
// after the previous removals (one forward + backward per decision; sleb: one forward per candidate);
// one-shot metrics (bi, angular) score the original model once. `--verify-top M` checks the M lowest-scored
// candidates by the calibration loss with each removed and keeps the best. Every rank runs the same loop on
// the same reduced scores, so decisions agree everywhere without extra messages.
import Foundation
import GradMapData
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapSupport
import GradMapRuntime

public enum CompensationTarget: Sendable, Equatable {
    case auto, shift, layer(Int)
}

public struct PruneOptions: Sendable {
    public var metric: Metric = .bi
    public var remove = 0
    /// Remove exactly these layers (in this order) instead of scoring.
    public var layers: [Int]? = nil
    public var verifyTop = 1
    public var protectFirst = 1
    public var protectLast = 1
    public var seed: UInt64 = 0
    /// bi: rescore after each removal instead of one-shot.
    public var iterative = false
    public var gradientNorm: GradientNorm = .l1
    public var microBatch = 1
    /// nil: no compensation.
    public var compensateAt: CompensationTarget? = .auto
    public var ridge = 1e-2
    public init() {}
}

public struct Decision: Sendable {
    public let step: Int
    public let removed: Int
    /// The chosen layer's score (its calibration loss when chosen by verification).
    public let score: Double
    /// Score of every original layer at this decision, NaN once removed (or not scored).
    public let scores: [Double]
    /// (candidate, calibration loss without it) when --verify-top M > 1.
    public let verified: [(Int, Double)]
    public let seconds: Double

    package init(step: Int, removed: Int, score: Double, scores: [Double], verified: [(Int, Double)], seconds: Double) {
        self.step = step; self.removed = removed; self.score = score; self.scores = scores; self.verified = verified
        self.seconds = seconds
    }
}

/// Concrete in Float (not generic) so that everything it drives — the pipeline, the stages, the kernels — is
/// specialised for Float here (the kernels are @inlinable); a generic class called from the CLI would run
/// unspecialised code.
public final class Pruner: @unchecked Sendable {
    public typealias F = Float
    public let pipeline: Pipeline<F>
    public let config: ModelConfig
    public let data: TokenWindows
    public let calibration: [Int]
    public let validation: [Int]
    public let options: PruneOptions
    let seqLen: Int
    public private(set) var kept: Set<Int>
    var rng: SplitMix64
    /// Receives progress lines (the CLI prints them on rank 0).
    public var progress: ((String) -> Void)?
    /// The job's seconds left after a decision, given the decisions left and their measured seconds each (the
    /// job adds what follows them); nil: the decisions alone.
    public var timeLeft: ((_ decisions: Int, _ secondsEach: Double) -> Double)?

    public init(
        pipeline: Pipeline<F>, data: TokenWindows, calibration: [Int], validation: [Int], options: PruneOptions
    ) throws {
        self.pipeline = pipeline
        config = pipeline.stage.config
        self.data = data
        self.calibration = calibration
        self.validation = validation
        self.options = options
        seqLen = data.seqLen
        kept = Set(0..<config.layers)
        rng = SplitMix64(state: options.seed &+ 0x5eed)
        try Pruner.validate(options, layers: config.layers)
    }

    /// Rejects impossible requests before any work (one line, the PruneOptions field named).
    public static func validate(_ o: PruneOptions, layers l: Int) throws {
        guard o.protectFirst >= 0 else { throw bad(.protectFirst, o.protectFirst, "must be at least 0") }
        guard o.protectLast >= 0 else { throw bad(.protectLast, o.protectLast, "must be at least 0") }
        let unprotected = max(0, l - o.protectFirst - o.protectLast)
        if let given = o.layers {
            guard !given.isEmpty else { throw bad(.layers, nil, "empty list") }
            for x in given where x < 0 || x >= l {
                throw bad(.layers, nil, "layer \(x) is out of range; the model has layers 0..\(l - 1)")
            }
            if let dup = given.first(where: { x in given.filter { $0 == x }.count > 1 }) {
                throw bad(.layers, nil, "layer \(dup) is given twice")
            }
            guard given.count < l else { throw bad(.layers, nil, "removing all \(l) layers leaves no model") }
        } else {
            guard o.remove >= 1 else { throw bad(.remove, o.remove, "must be at least 1") }
            guard o.remove < unprotected else {
                let why = "\(l) layers, the first \(o.protectFirst) and the last \(o.protectLast) protected"
                throw bad(.remove, o.remove, "must be less than the \(unprotected) layers that may be removed (\(why))")
            }
        }
        guard o.verifyTop >= 1 else { throw bad(.verifyTop, o.verifyTop, "must be at least 1") }
        guard o.microBatch >= 1 else { throw bad(.microBatch, o.microBatch, "must be at least 1") }
        if case .layer(let j)? = o.compensateAt {
            guard j >= 0 && j < l else { throw bad(.compensateAt, j, "out of range; the model has layers 0..\(l - 1)") }
            if let given = o.layers, given.contains(j) {
                throw bad(.compensateAt, j, "layer \(j) is one of the layers to remove")
            }
        }
        guard o.ridge > 0 else { throw bad(.ridge, o.ridge, "must be positive") }
    }

    /// Kept layers that may be removed, ascending.
    func removable() -> [Int] {
        kept.filter { $0 >= options.protectFirst && $0 < config.layers - options.protectLast }.sorted()
    }

    /// A pass over the current model (the kept layers, less `extra`) in the job's arithmetic.
    public func pass(_ gradients: Pass.Gradients = .none, without extra: Set<Int> = []) -> Pass {
        pipeline.pass(gradients, layers: kept.subtracting(extra))
    }

    /// Calibration loss (mean NLL) of the current model with `extra` layers also skipped; forward only.
    public func loss(without extra: Set<Int> = [], windows: [Int]? = nil) throws -> Double {
        let list = windows ?? calibration
        return try pipeline.run(data: data, windows: list, microBatch: options.microBatch, pass: pass(without: extra)).loss
    }

    /// Calibration loss of the current model with each candidate removed in turn (one reusing sweep).
    func lossesWithout(_ candidates: [Int]) throws -> [Double] {
        try pipeline.sweep(data: data, windows: calibration, microBatch: options.microBatch, pass: pass(), candidates: candidates)
    }

    public func remove(_ layer: Int) {
        kept.remove(layer)
    }

    /// The K decisions (or the given layers, unscored). `done` are decisions a journal kept from an earlier
    /// run of the same job: replayed (their layers removed, the random generator advanced as they advanced it),
    /// then the rest taken; `completed` sees each new one as it completes (the journal).
    public func decide(resuming done: [Decision] = [], completed: ((Decision) throws -> Void)? = nil) throws -> [Decision] {
        let start = DispatchTime.now().uptimeNanoseconds
        var decisions: [Decision] = []
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let total = options.layers?.count ?? options.remove
        let oneShot = options.layers == nil && (options.metric == .angular || (options.metric == .bi && !options.iterative))
        for d in done.prefix(total) {
            decisions.append(d)
            remove(d.removed)
            // One uniform draw per kept layer per decision: the generator's state as the earlier run left it.
            if options.layers == nil && options.metric == .random { _ = try score(.random) }
            progress?(String(format: "decision %d/%d: removed layer %d (score %.6g), from the journal", d.step, total, d.removed, d.score))
        }
        // When the scores are known (after a one-shot metric's single pass): what is left per decision is only
        // its own work (a verification sweep, or nothing), so the estimate counts from here.
        var scoredAt = 0.0
        func record(_ layer: Int, _ score: Double, _ scores: [Double], _ verified: [(Int, Double)], _ t0: Double) throws {
            let d = Decision(step: decisions.count + 1, removed: layer, score: score, scores: scores, verified: verified, seconds: elapsed() - t0)
            decisions.append(d)
            remove(layer)
            try completed?(d)
            let taken = d.step - done.count, now = elapsed()
            let pace = (now - scoredAt) / Double(taken)
            let left = timeLeft?(total - d.step, pace) ?? pace * Double(total - d.step)
            progress?(String(format: "decision %d/%d: removed layer %d (score %.6g)  elapsed %.1f s, ~%.0f s left",
                             d.step, total, layer, score, now, left))
        }
        if let given = options.layers {
            let nan = [Double](repeating: .nan, count: config.layers)
            for layer in given.dropFirst(decisions.count) { try record(layer, .nan, nan, [], elapsed()) }
            return decisions
        }
        // One-shot metrics score the original model once: its scores are the first decision's (all layers kept
        // then), so a resumed job reads them from the journal instead of scoring again.
        let t0 = elapsed()
        let original = oneShot ? try done.first?.scores ?? score(options.metric) : []
        if oneShot { scoredAt = elapsed() }
        switch options.metric {
        case .angular:
            guard let startLayer = argmin(original, among: Array(0..<config.layers)) else {
                throw bad(.remove, total, "no block of \(total) consecutive unprotected layers")
            }
            for layer in (startLayer..<(startLayer + total)).dropFirst(decisions.count) {
                var s = original
                for r in 0..<config.layers where !kept.contains(r) { s[r] = .nan }
                try record(layer, original[startLayer], s, [], t0)
            }
        case .bi where !options.iterative:
            while decisions.count < total {
                var s = original
                for r in 0..<config.layers where !kept.contains(r) { s[r] = .nan }
                let (layer, score, verified) = try choose(s)
                try record(layer, score, s, verified, t0)
            }
        default:
            while decisions.count < total {
                let t0 = elapsed()
                let scores = try score(options.metric)
                let (layer, score, verified) = try choose(scores)
                try record(layer, score, scores, verified, t0)
            }
        }
        return decisions
    }

    /// One decision's scores on the current model (angular: of each block of `remove` layers).
    public func scoreOnce() throws -> [Double] {
        try score(options.metric)
    }

    /// The lowest-scored removable layer (ties: the lower index), or with --verify-top M the one among the
    /// M lowest whose removal leaves the lowest calibration loss.
    func choose(_ scores: [Double]) throws -> (Int, Double, [(Int, Double)]) {
        let candidates = removable().filter { !scores[$0].isNaN }
        guard !candidates.isEmpty else { throw GradMapError.runtime("no removable layer has a score") }
        let ranked = candidates.sorted { (scores[$0], $0) < (scores[$1], $1) }
        guard options.verifyTop > 1, options.metric != .sleb else { return (ranked[0], scores[ranked[0]], []) }
        let top = Array(ranked.prefix(options.verifyTop))
        let verified = Array(zip(top, try lossesWithout(top)))
        let best = verified.min { ($0.1, $0.0) < ($1.1, $1.0) }!
        return (best.0, best.1, verified)
    }

    /// The layer an unverified decision on these scores removes: the lowest-scored removable one (angular:
    /// the start of the lowest-scored block).
    public func lowestScored(_ scores: [Double]) throws -> Int {
        let among = options.metric == .angular ? Array(0..<config.layers) : removable()
        guard let layer = argmin(scores, among: among) else { throw GradMapError.runtime("no removable layer has a score") }
        return layer
    }

    func argmin(_ scores: [Double], among layers: [Int]) -> Int? {
        layers.filter { !scores[$0].isNaN }.min { (scores[$0], $0) < (scores[$1], $1) }
    }
}
