// Norms of parameter gradients per layer (what `grad-stats` prints and the gradient metrics build on).
import GradMapEngine
import GradMapFormats
import GradMapRuntime

public struct LayerGradNorms: Sendable {
    public let index: Int
    /// (local tensor name, L2 norm of its gradient), in checkpoint order.
    public let norms: [(String, Double)]
}

public enum GradientStats {
    /// Σ x² of a gradient tensor, accumulated in Double.
    static func sumSquares<F: Real>(_ p: UnsafePointer<F>, _ n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { let x = p[i].double; s += x * x }
        return s
    }

    public static func layerL2<F: Real>(_ params: ParameterSet<F>) -> [LayerGradNorms] {
        guard let grads = params.grads else { return [] }
        var byLayer: [Int: [(String, Double)]] = [:]
        for s in params.specs {
            guard let l = s.layer else { continue }
            byLayer[l, default: []].append((s.localName, sumSquares(grads.pointer + s.offset, s.count).squareRoot()))
        }
        return byLayer.keys.sorted().map { LayerGradNorms(index: $0, norms: byLayer[$0]!) }
    }

    /// Every layer's gradient norms on every rank: replica 0's stages fill their layers' sums of squares
    /// in a fixed [layers × tensors per layer] table, summed over the world.
    public static func gatherLayerL2<F: Real>(_ pipeline: Pipeline<F>) throws -> [LayerGradNorms] {
        let c = pipeline.stage.config
        let names = ParamLayout.layerTensors(c).map(\.0)
        var table = [Double](repeating: 0, count: c.layers * names.count)
        if pipeline.me.replica == 0, let grads = pipeline.stage.params.grads {
            for s in pipeline.stage.params.specs {
                guard let l = s.layer, let j = names.firstIndex(of: s.localName) else { continue }
                table[l * names.count + j] = sumSquares(grads.pointer + s.offset, s.count)
            }
        }
        table = try pipeline.world.allReduceSum(table)
        return (0..<c.layers).map { l in
            LayerGradNorms(index: l, norms: names.enumerated().map { ($1, table[l * names.count + $0].squareRoot()) })
        }
    }
}
