// angular: blocks of n = K layers, d(l) = mean over windows of arccos(cos(h_l, h_{l+n})) / π at each window's
// last token; the pruner removes the lowest-scored block [l*, l*+n) at once (one-shot, original model).
import Foundation
import GradMapEngine

struct AngularMetric: LayerMetric {
    var gradients: Pass.Gradients { .none }

    /// One score per block, at its first layer; NaN where the block does not fit inside the unprotected layers.
    func scores(_ p: Pruner) throws -> [Double] {
        let n = p.options.remove
        let l = p.config.layers, h = p.config.hidden, t = p.seqLen
        let w = p.calibration.count
        let slot = Dictionary(uniqueKeysWithValues: p.calibration.enumerated().map { ($1, $0) })
        // last[b][w][:] = h_b at the last token of window w, b = 0...L (boundary b is layer b's input).
        var last = [Double](repeating: 0, count: (l + 1) * w * h)
        _ = try p.pipeline.run(
            data: p.data, windows: p.calibration, microBatch: p.options.microBatch, pass: p.pass(gradients),
            tap: { list, tap in
                for (j, window) in list.enumerated() {
                    let row = (j * t + t - 1) * h
                    let base = (tap.layer * w + slot[window]!) * h
                    for i in 0..<h { last[base + i] = Double(tap.inp[row + i]) }
                    if tap.layer == l - 1 {
                        let top = (l * w + slot[window]!) * h
                        for i in 0..<h { last[top + i] = Double(tap.out[row + i]) }
                    }
                }
            })
        last = try p.pipeline.world.allReduceSum(last)
        let first = p.options.protectFirst, end = l - p.options.protectLast
        var scores = [Double](repeating: .nan, count: l)
        for start in first...max(first, end - n) where start + n <= end {
            var d = 0.0
            for j in 0..<w {
                let a = (start * w + j) * h, b = ((start + n) * w + j) * h
                let c = last.withUnsafeBufferPointer { cosine($0.baseAddress! + a, $0.baseAddress! + b, h) }
                d += acos(max(-1, min(1, c))) / Double.pi
            }
            scores[start] = d / Double(w)
        }
        return scores
    }
}
