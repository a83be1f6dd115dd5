// taylor: Σ over the layer's matrices of Σ_ij |W_ij · G_W,ij|, the first-order loss change of zeroing them.
import GradMapEngine

struct TaylorMetric: LayerMetric {
    var gradients: Pass.Gradients { .layerMatrices }

    func scores(_ p: Pruner) throws -> [Double] {
        try p.layerMatrixScores(
            gradients,
            term: { s, g in
                let w = p.pipeline.stage.params.value(s), n = s.count
                var acc = 0.0
                for i in 0..<n { acc += abs(Double(w[i]) * Double(g[i])) }
                return acc
            },
            { v, _ in v })
    }
}
