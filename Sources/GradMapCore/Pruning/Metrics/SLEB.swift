// sleb: the calibration loss of the current model with l also removed, for every removable layer (one
// reusing forward sweep); protected layers stay NaN.
import GradMapEngine

struct SLEBMetric: LayerMetric {
    var gradients: Pass.Gradients { .none }

    func scores(_ p: Pruner) throws -> [Double] {
        var scores = [Double](repeating: .nan, count: p.config.layers)
        let candidates = p.removable()
        for (c, v) in zip(candidates, try p.lossesWithout(candidates)) { scores[c] = v }
        return scores
    }
}
