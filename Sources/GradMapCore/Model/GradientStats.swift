// Norms of parameter gradients per layer (what `grad-stats` prints and the gradient metrics build on).

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
}
