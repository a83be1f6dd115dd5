// Layer-importance metrics as docs/method.md defines them. Each scores the layers of the current model (the
// original with the removed layers skipped) from one pass over the calibration windows; lower means less
// important. Every rank scores the layers it holds; sums over tokens are reduced across replicas and the
// per-layer scores gathered across stages, so every rank ends with the same table.
import Foundation

public enum Metric: String, CaseIterable, Sendable {
    case gradmap, fisher, gate, taylor, bi, angular, sleb, random

    public var needsBackward: Bool { self == .gradmap || self == .fisher || self == .gate || self == .taylor }
}

public enum GradientNorm: String, Sendable { case l1, l2 }

/// Per-layer accumulation of a metric's sums (Double), indexed by original layer.
struct LayerSums {
    var values: [Double]
    var counts: [Double]
    init(layers: Int) {
        values = [Double](repeating: 0, count: layers)
        counts = [Double](repeating: 0, count: layers)
    }
}

extension Pruner {
    /// Scores of every original layer on the current model (NaN for removed layers and, for sleb, for
    /// protected ones). One forward (+ backward) pass over the calibration windows.
    func score(_ metric: Metric) throws -> [Double] {
        let l = config.layers
        switch metric {
        case .gradmap, .taylor:
            _ = try pipeline.run(data: data, windows: calibration, microBatch: options.microBatch, pass: pass(.layerMatrices))
            var sums = LayerSums(layers: l)
            if pipeline.me.replica == 0 { weightScores(metric, into: &sums) }
            return try finish(sums) { v, c in metric == .gradmap ? (options.gradientNorm == .l2 ? v.squareRoot() / c : v / c) : v }
        case .gate, .fisher:
            var perWindow = WindowSums(rows: l, windows: calibration.count)
            let h = config.hidden, t = seqLen
            _ = try pipeline.run(
                data: data, windows: calibration, microBatch: options.microBatch, pass: pass(.activations),
                observe: { list, layer, _, g, f in
                    // g = dL/dh_{l+1}, f = f_l(h_l), both [rows, H]: Σ_t <g_t, f_t> (gate) or Σ_t <g_t, f_t>² (fisher),
                    // one sum per window.
                    for j in 0..<list.count {
                        var acc = 0.0
                        for r in (j * t)..<((j + 1) * t) {
                            var d = 0.0
                            let gr = g + r * h, fr = f + r * h
                            for i in 0..<h { d += Double(gr[i]) * Double(fr[i]) }
                            acc += metric == .gate ? d : d * d
                        }
                        perWindow.add(acc, row: layer, slot: list.startIndex + j)
                    }
                })
            // Removing layer l changes the loss by -∂L/∂α_l to first order.
            let totals = try perWindow.totals(over: pipeline.world)
            return (0..<l).map { i in kept.contains(i) ? (metric == .gate ? -totals[i] : totals[i]) : .nan }
        case .bi:
            var perWindow = WindowSums(rows: l, windows: calibration.count)
            let h = config.hidden, t = seqLen
            _ = try pipeline.run(
                data: data, windows: calibration, microBatch: options.microBatch, pass: pass(),
                tap: { list, tap in
                    for j in 0..<list.count {
                        var acc = 0.0
                        for r in (j * t)..<((j + 1) * t) { acc += cosine(tap.inp + r * h, tap.out + r * h, h) }
                        perWindow.add(acc, row: tap.layer, slot: list.startIndex + j)
                    }
                })
            let totals = try perWindow.totals(over: pipeline.world)
            let tokens = Double(calibration.count * t)
            return (0..<l).map { i in kept.contains(i) ? 1 - totals[i] / tokens : .nan }
        case .sleb:
            var scores = [Double](repeating: .nan, count: l)
            let candidates = removable()
            for (c, v) in zip(candidates, try lossesWithout(candidates)) { scores[c] = v }
            return scores
        case .random:
            var scores = [Double](repeating: .nan, count: l)
            for c in kept.sorted() { scores[c] = rng.nextUnit() }
            return scores
        case .angular:
            preconditionFailure("angular distance scores blocks; see angularBlock()")
        }
    }

    /// Σ|G| and element counts (gradmap, L1; Σ G² for L2) or Σ|W ⊙ G| (taylor) over this stage's kept
    /// layers' weight matrices.
    func weightScores(_ metric: Metric, into sums: inout LayerSums) {
        let params = pipeline.stage.params
        let grads = params.grads!.pointer
        for s in params.specs where s.isMatrix && kept.contains(s.layer!) {
            let g = grads + s.offset
            let w = metric == .taylor ? params.value(s) : g
            var acc = 0.0
            switch (metric, options.gradientNorm) {
            case (.taylor, _): for i in 0..<s.count { acc += abs(Double(w[i]) * Double(g[i])) }
            case (_, .l1): for i in 0..<s.count { acc += abs(Double(g[i])) }
            case (_, .l2): for i in 0..<s.count { acc += Double(g[i]) * Double(g[i]) }
            }
            sums.values[s.layer!] += acc
            sums.counts[s.layer!] += Double(s.count)
        }
    }

    /// Sums over the world (replica 0's stages hold disjoint layers, every other rank adds zeros, so the sum is
    /// exact), then score = f(value, count) for kept layers, NaN for removed ones.
    func finish(_ sums: LayerSums, _ f: (Double, Double) -> Double) throws -> [Double] {
        let l = config.layers
        let all = try pipeline.world.allReduceSum(sums.values + sums.counts)
        return (0..<l).map { i in kept.contains(i) ? f(all[i], all[l + i]) : .nan }
    }

    /// Angular distance of every block of n = K layers starting at l (one-shot, original model): the mean over
    /// windows of arccos(cos(h_l, h_{l+n})) / π at each window's last token. NaN where the block does not fit
    /// inside the unprotected layers.
    func angularScores(blockSize n: Int) throws -> [Double] {
        let l = config.layers, h = config.hidden, t = seqLen
        let w = calibration.count
        let slot = Dictionary(uniqueKeysWithValues: calibration.enumerated().map { ($1, $0) })
        // last[b][w][:] = h_b at the last token of window w, b = 0...L (boundary b is layer b's input).
        var last = [Double](repeating: 0, count: (l + 1) * w * h)
        _ = try pipeline.run(
            data: data, windows: calibration, microBatch: options.microBatch, pass: pass(),
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
        last = try pipeline.world.allReduceSum(last)
        var scores = [Double](repeating: .nan, count: l)
        for start in options.protectFirst...max(options.protectFirst, l - options.protectLast - n) where start + n <= l - options.protectLast {
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

/// cos(a, b) of two vectors of length n, in Double.
func cosine<F: Real>(_ a: UnsafePointer<F>, _ b: UnsafePointer<F>, _ n: Int) -> Double {
    var ab = 0.0, aa = 0.0, bb = 0.0
    for i in 0..<n {
        let x = a[i].double, y = b[i].double
        ab += x * y; aa += x * x; bb += y * y
    }
    return aa > 0 && bb > 0 ? ab / (aa.squareRoot() * bb.squareRoot()) : 0
}
