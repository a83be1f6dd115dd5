// fisher: Σ_t <∂L/∂h_{l+1,t}, f_l(h_l)_t>², the empirical Fisher of layer l's residual gate.
import GradMapEngine

struct FisherMetric: LayerMetric {
    var gradients: Pass.Gradients { .activations }

    func scores(_ p: Pruner) throws -> [Double] {
        let totals = try p.residualGradientTotals(gradients, term: { d in d * d })
        return (0..<p.config.layers).map { i in p.kept.contains(i) ? totals[i] : .nan }
    }
}
