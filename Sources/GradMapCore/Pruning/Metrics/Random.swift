// random: one uniform draw per kept layer in ascending order (protected ones too), from the pruner's
// generator, whose state carries over decisions. Needs no pass.
import GradMapEngine

struct RandomMetric: LayerMetric {
    var gradients: Pass.Gradients { .none }

    func scores(_ p: Pruner) throws -> [Double] {
        var scores = [Double](repeating: .nan, count: p.config.layers)
        for c in p.kept.sorted() { scores[c] = p.rng.nextUnit() }
        return scores
    }
}
