// Layer-importance metrics as docs/method.md defines them, one strategy per file. Each declares the pass it
// needs (forward only, activation gradients, or the layers' weight-matrix gradients) and scores the layers of
// the pruner's current model (the original with the removed layers skipped) from one such pass over the
// calibration windows; lower means less important. Every rank scores the layers it holds; sums over tokens
// are reduced across replicas and the per-layer scores gathered across stages, so every rank ends with the
// same table.
import Foundation
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapRuntime

public enum Metric: String, CaseIterable, Sendable {
    case gradmap, fisher, gate, taylor, bi, angular, sleb, random

    /// The strategy that computes this metric.
    var strategy: any LayerMetric {
        switch self {
        case .gradmap: return GradMapMetric()
        case .fisher: return FisherMetric()
        case .gate: return GateMetric()
        case .taylor: return TaylorMetric()
        case .bi: return BlockInfluenceMetric()
        case .angular: return AngularMetric()
        case .sleb: return SLEBMetric()
        case .random: return RandomMetric()
        }
    }

    /// Whether the stages must be built for a backward (gradient buffers, stored activations).
    public var needsBackward: Bool { strategy.gradients != .none }
}

public enum GradientNorm: String, Sendable { case l1, l2 }

/// One metric: the gradients its pass produces and how the pass becomes scores.
protocol LayerMetric {
    /// What the backward of its pass computes (.none: forward only, or no pass at all).
    var gradients: Pass.Gradients { get }
    /// Scores of every original layer on `pruner`'s current model: NaN for removed layers and for those the
    /// metric does not score (angular: one score per block, at its first layer).
    func scores(_ pruner: Pruner) throws -> [Double]
}

extension Pruner {
    func score(_ metric: Metric) throws -> [Double] { try metric.strategy.scores(self) }
}

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
    /// The weight-gradient metrics' pass (the layers' matrices only), then per kept layer Σ over its weight
    /// matrices of `term(spec, G)` and their element counts, summed over the world; score =
    /// f(value, count) for kept layers, NaN for removed ones.
    func layerMatrixScores(
        _ gradients: Pass.Gradients, term: (ParamSpec, UnsafePointer<F>) -> Double,
        _ f: (Double, Double) -> Double
    ) throws -> [Double] {
        _ = try pipeline.run(data: data, windows: calibration, microBatch: options.microBatch, pass: pass(gradients))
        var sums = LayerSums(layers: config.layers)
        // Replica 0's stages hold disjoint layers and every other rank adds zeros, so the sum is exact.
        if pipeline.me.replica == 0 {
            let params = pipeline.stage.params
            let grads = params.grads!.pointer
            for s in params.specs where s.isMatrix && kept.contains(s.layer!) {
                sums.values[s.layer!] += term(s, grads + s.offset)
                sums.counts[s.layer!] += Double(s.count)
            }
        }
        let l = config.layers
        let all = try pipeline.world.allReduceSum(sums.values + sums.counts)
        return (0..<l).map { i in kept.contains(i) ? f(all[i], all[l + i]) : .nan }
    }

    /// The activation-gradient metrics' pass, then per kept layer Σ over windows of Σ_t term(<g_t, f_t>),
    /// g = dL/dh_{l+1} and f = f_l(h_l), reduced over the world (removed layers' rows stay 0).
    func residualGradientTotals(_ gradients: Pass.Gradients, term: @escaping (Double) -> Double) throws -> [Double] {
        let l = config.layers, h = config.hidden, t = seqLen
        var perWindow = WindowSums(rows: l, windows: calibration.count)
        _ = try pipeline.run(
            data: data, windows: calibration, microBatch: options.microBatch, pass: pass(gradients),
            observe: { list, layer, _, g, f in
                // g and f are [rows, H]: one sum per window.
                for j in 0..<list.count {
                    var acc = 0.0
                    for r in (j * t)..<((j + 1) * t) {
                        var d = 0.0
                        let gr = g + r * h, fr = f + r * h
                        for i in 0..<h { d += Double(gr[i]) * Double(fr[i]) }
                        acc += term(d)
                    }
                    perWindow.add(acc, row: layer, slot: list.startIndex + j)
                }
            })
        return try perWindow.totals(over: pipeline.world)
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
