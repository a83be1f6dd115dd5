// gradmap: the mean absolute weight gradient of the layer's matrices, Σ‖G_W‖₁ / Σ|W| (L2: (Σ‖G_W‖₂²)^½ / Σ|W|).
import GradMapEngine

struct GradMapMetric: LayerMetric {
    var gradients: Pass.Gradients { .layerMatrices }

    func scores(_ p: Pruner) throws -> [Double] {
        let norm = p.options.gradientNorm
        return try p.layerMatrixScores(
            gradients,
            term: { s, g in
                let n = s.count
                var acc = 0.0
                switch norm {
                case .l1: for i in 0..<n { acc += abs(Double(g[i])) }
                case .l2: for i in 0..<n { acc += Double(g[i]) * Double(g[i]) }
                }
                return acc
            },
            { v, c in norm == .l2 ? v.squareRoot() / c : v / c })
    }
}
