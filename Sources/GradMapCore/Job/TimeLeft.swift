// The time a prune job has left, for its progress lines: the decisions still to take at their measured pace,
// then every forward pass the job will still run (the calibration losses, the compensation's passes, the
// held-out evaluations) at the forward rate measured so far. A pass costs its windows × tokens × the FLOPs
// per token of the layers it runs (Placement.forwardFlopsPerToken: each decoder layer alike, plus the
// lm_head), so that a pass over the pruned model is estimated from the measured ones over the original.
// Not counted: writing the checkpoint, and the compensation's Float64 sums beside its passes.
import Foundation
import GradMapCompensation
import GradMapDistributed
import GradMapFormats
import GradMapPruning
import GradMapSupport

/// A forward pass the job has still to run.
public struct PlannedPass: Sendable, Equatable {
    public let windows: Int
    /// Decoder layers the pass runs (a layer run for two models counts twice).
    public let layers: Int
    /// Whether it ends in the lm_head (the compensation's sums do not).
    public let head: Bool

    public init(windows: Int, layers: Int, head: Bool = true) {
        self.windows = windows
        self.layers = layers
        self.head = head
    }
}

/// The steps of a prune job after its decisions, in the order it takes them.
public enum JobStep: Int, Sendable, Comparable, CaseIterable {
    case prunedLoss, prunedEval, compensation, compensatedLoss, compensatedEval

    public static func < (a: JobStep, b: JobStep) -> Bool { a.rawValue < b.rawValue }
}

/// What a prune job's passes after its decisions are made of.
public struct PrunePlan: Sendable, Equatable {
    /// The model's decoder layers and how many the job removes.
    public var layers: Int
    public var remove: Int
    public var calibrationWindows: Int
    public var validationWindows: Int
    /// nil: no held-out evaluation.
    public var heldOutWindows: Int?
    /// nil: no compensation.
    public var compensation: CompensationTarget?

    public init(layers: Int, remove: Int, calibrationWindows: Int, validationWindows: Int, heldOutWindows: Int?,
                compensation: CompensationTarget?) {
        self.layers = layers
        self.remove = remove
        self.calibrationWindows = calibrationWindows
        self.validationWindows = validationWindows
        self.heldOutWindows = heldOutWindows
        self.compensation = compensation
    }

    /// Every forward pass from `step` on, assuming a compensation is applied. `removed`: the layers removed so
    /// far, from which the auto compensation's candidates are counted (exact once every decision is taken).
    public func passes(from step: JobStep, removed: Set<Int>) -> [PlannedPass] {
        let kept = layers - remove
        let calib = PlannedPass(windows: calibrationWindows, layers: kept)
        let eval = heldOutWindows.map { [PlannedPass(windows: $0, layers: kept)] } ?? []
        var out: [PlannedPass] = []
        for s in JobStep.allCases where s >= step {
            switch s {
            case .prunedLoss: out.append(calib)
            case .prunedEval: out += eval
            case .compensation:
                guard let target = compensation else { continue }
                out += Compensation.plannedPasses(
                    target: target, calibrationWindows: calibrationWindows, validationWindows: validationWindows,
                    layers: layers, removed: removed, kept: kept)
            case .compensatedLoss: if compensation != nil { out.append(calib) }
            case .compensatedEval: if compensation != nil { out += eval }
            }
        }
        return out
    }
}

/// The forward time measured so far, per FLOP of the passes it was measured on.
public struct ForwardRate: Sendable, Equatable {
    /// FLOPs per token of one decoder layer and of the lm_head.
    public let layerFlops: Double
    public let headFlops: Double
    public let seqLen: Int
    public private(set) var seconds = 0.0
    public private(set) var flops = 0.0

    public init(layerFlops: Double, headFlops: Double, seqLen: Int) {
        self.layerFlops = layerFlops
        self.headFlops = headFlops
        self.seqLen = seqLen
    }

    public init(config c: ModelConfig, seqLen: Int) {
        self.init(
            layerFlops: Placement.forwardFlopsPerToken(c, StagePart(layers: 0..<1, embedding: false, head: false), seqLen: seqLen),
            headFlops: Placement.forwardFlopsPerToken(c, StagePart(layers: 0..<0, embedding: false, head: true), seqLen: seqLen),
            seqLen: seqLen)
    }

    public func flops(_ p: PlannedPass) -> Double {
        Double(p.windows * seqLen) * (Double(p.layers) * layerFlops + (p.head ? headFlops : 0))
    }

    /// A pass that took `seconds`.
    public mutating func measured(_ p: PlannedPass, seconds s: Double) {
        seconds += s
        flops += flops(p)
    }
}

/// Seconds a job has left: `decisions` more at `secondsPerDecision` each, then `passes` at the measured forward
/// rate (nothing for them before any pass is measured).
public func secondsLeft(decisions: Int, secondsPerDecision: Double, passes: [PlannedPass], rate: ForwardRate) -> Double {
    let work = passes.reduce(0.0) { $0 + rate.flops($1) }
    let perFlop = rate.flops > 0 ? rate.seconds / rate.flops : 0
    return Double(decisions) * secondsPerDecision + work * perFlop
}

/// A running job's estimate: its plan and the forward passes it has timed so far.
final class JobClock {
    let plan: PrunePlan
    private(set) var rate: ForwardRate

    init(plan: PrunePlan, rate: ForwardRate) {
        self.plan = plan
        self.rate = rate
    }

    /// Runs a forward pass of `windows` over `layers` and adds its time to the rate; its value and seconds.
    func time<T>(windows: Int, layers: Int, _ pass: () throws -> T) rethrows -> (T, Double) {
        let t = DispatchTime.now()
        let value = try pass()
        let seconds = elapsed(since: t)
        rate.measured(PlannedPass(windows: windows, layers: layers), seconds: seconds)
        return (value, seconds)
    }

    func secondsLeft(from step: JobStep, removed: Set<Int>, decisions: Int = 0, secondsEach: Double = 0) -> Double {
        GradMapJob.secondsLeft(
            decisions: decisions, secondsPerDecision: secondsEach, passes: plan.passes(from: step, removed: removed), rate: rate)
    }

    /// The end of a progress line.
    func left(from step: JobStep, removed: Set<Int>) -> String {
        String(format: "; ~%.0f s left", secondsLeft(from: step, removed: removed))
    }
}
