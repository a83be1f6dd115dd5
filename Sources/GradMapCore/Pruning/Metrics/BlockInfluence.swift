// bi (block influence): 1 - mean_t cos(h_{l,t}, h_{l+1,t}), how little layer l turns the residual stream.
import GradMapDistributed
import GradMapEngine

struct BlockInfluenceMetric: LayerMetric {
    var gradients: Pass.Gradients { .none }

    func scores(_ p: Pruner) throws -> [Double] {
        let l = p.config.layers, h = p.config.hidden, t = p.seqLen
        var perWindow = WindowSums(rows: l, windows: p.calibration.count)
        _ = try p.pipeline.run(
            data: p.data, windows: p.calibration, microBatch: p.options.microBatch, pass: p.pass(gradients),
            tap: { list, tap in
                for j in 0..<list.count {
                    var acc = 0.0
                    for r in (j * t)..<((j + 1) * t) { acc += cosine(tap.inp + r * h, tap.out + r * h, h) }
                    perWindow.add(acc, row: tap.layer, slot: list.startIndex + j)
                }
            })
        let totals = try perWindow.totals(over: p.pipeline.world)
        let tokens = Double(p.calibration.count * t)
        return (0..<l).map { i in p.kept.contains(i) ? 1 - totals[i] / tokens : .nan }
    }
}
