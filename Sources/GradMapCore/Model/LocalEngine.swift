// The single-process driver: one stage holding the whole model, windows processed in micro-batches.
// It defines the loss the distributed schedule must reproduce: mean next-token NLL over positions 1..T-1 of
// each window, averaged over windows, with gradients of exactly that mean.
import Foundation

public struct LossResult: Sendable {
    public let windows: Int
    public let seqLen: Int
    /// Σ NLL over all predictions.
    public let nll: Double
    public var predictions: Int { windows * (seqLen - 1) }
    public var loss: Double { nll / Double(predictions) }
}

public enum LocalEngine {
    /// Loads every tensor of the checkpoint into a single stage (strict: shapes checked, nothing left over).
    public static func load<F: Real>(
        _ ckpt: Checkpoint, seqLen: Int, maxBatch: Int, training: Bool, policy: ActivationPolicy = .store
    ) throws -> Stage<F> {
        let c = ckpt.config
        let unexpected = ckpt.unexpectedTensors(expected: ParamLayout.allNames(c))
        if let first = unexpected.first {
            throw bad("\(ckpt.directory): unexpected tensor \(first) (\(unexpected.count) not used by a \(c.modelType) model of this config)")
        }
        let params = ParameterSet<F>(config: c, part: .whole(c))
        try params.load(from: ckpt)
        return Stage(config: c, params: params, seqLen: seqLen, maxBatch: maxBatch, policy: policy, training: training)
    }

    /// Mean loss over the windows; with `backward`, params.grads receives ∂loss/∂θ (zeroed first).
    public static func run<F: Real>(
        _ stage: Stage<F>, data: TokenWindows, windows: [Int], microBatch: Int, backward: Bool,
        onLogits: ((Int, UnsafePointer<F>) -> Void)? = nil
    ) -> LossResult {
        let t = stage.seqLen
        let ids = Buffer<UInt32>(count: microBatch * t, zero: 0)
        let scale = F(1.0 / Double(windows.count * (t - 1)))
        if backward { stage.params.grads!.zero() }
        var nll = 0.0
        var start = 0
        while start < windows.count {
            let b = min(microBatch, windows.count - start)
            data.gather(windows[start..<(start + b)], into: ids.pointer)
            stage.embed(ids: ids.pointer, b: b, slot: 0)
            stage.forwardLayers(b: b, slot: 0)
            let base = start
            nll += stage.head(
                ids: ids.pointer, b: b, slot: 0, gradScale: backward ? scale : nil,
                onLogits: onLogits.map { f in { w, p in f(base + w, p) } })
            if backward {
                stage.backwardLayers(b: b, slot: 0)
                stage.embedBackward(ids: ids.pointer, b: b)
            }
            start += b
        }
        return LossResult(windows: windows.count, seqLen: t, nll: nll)
    }
}
