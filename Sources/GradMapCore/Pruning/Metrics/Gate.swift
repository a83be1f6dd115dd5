// gate: Δ_l = -Σ_t <∂L/∂h_{l+1,t}, f_l(h_l)_t>. Scaling layer l's residual contribution by α_l, removing it
// changes the loss by -∂L/∂α_l to first order.
import GradMapEngine

struct GateMetric: LayerMetric {
    var gradients: Pass.Gradients { .activations }

    func scores(_ p: Pruner) throws -> [Double] {
        let totals = try p.residualGradientTotals(gradients, term: { d in d })
        return (0..<p.config.layers).map { i in p.kept.contains(i) ? -totals[i] : .nan }
    }
}
