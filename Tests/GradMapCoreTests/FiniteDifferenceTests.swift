// Each kernel's backward against central finite differences, in Double (the same generic kernels the engine
// runs in Float). For a kernel y = f(x) and a fixed random r, L = Σ r ⊙ y; the backward with dout = r must
// equal (L(x + εe) - L(x - εe)) / 2ε for every input element.
//
// Tolerance: with ε = 1e-5 in Double the central difference has truncation error ~ε²·|f'''| ≈ 1e-10 and
// rounding error ~1e-16/ε ≈ 1e-11, so 1e-6 relative (max |diff| / max |grad|) is loose for a correct
// backward and orders of magnitude tighter than any wrong term.
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapKernels

struct SeededRandom {
    var state: UInt64
    mutating func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / Double(1 << 53) * 2 - 1
    }
    mutating func array(_ n: Int, scale: Double = 1) -> [Double] { (0..<n).map { _ in next() * scale } }
}

final class FiniteDifferenceTests: XCTestCase {
    let eps = 1e-5
    let tolerance = 1e-6

    /// Compares analytical `grad` of L(x) with central differences over every element of `x`.
    func check(_ label: String, _ x: inout [Double], _ grad: [Double], _ loss: ([Double]) -> Double) {
        var fd = [Double](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let saved = x[i]
            x[i] = saved + eps
            let plus = loss(x)
            x[i] = saved - eps
            let minus = loss(x)
            x[i] = saved
            fd[i] = (plus - minus) / (2 * eps)
        }
        let scale = max(fd.map(abs).max() ?? 0, 1e-12)
        let diff = zip(fd, grad).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(fd.map(abs).max() ?? 0, 1e-8, "\(label): gradient is identically zero, test would be vacuous")
        XCTAssertLessThan(diff / scale, tolerance, "\(label): relative error \(diff / scale)")
    }

    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    func testLinear() {
        var rng = SeededRandom(state: 1)
        let n = 3, i = 4, o = 5
        var x = rng.array(n * i), w = rng.array(o * i), b = rng.array(o)
        let r = rng.array(n * o)
        func f(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var y = [Double](repeating: 0, count: n * o)
            linearForward(&y, x, w, b, n: n, inDim: i, outDim: o)
            return dot(y, r)
        }
        var dx = [Double](repeating: 0, count: n * i), dw = [Double](repeating: 0, count: o * i)
        var db = [Double](repeating: 0, count: o)
        linearBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: r, inp: x, weight: w, n: n, inDim: i, outDim: o, accumulateInput: false)
        check("linear dx", &x, dx) { f($0, w, b) }
        check("linear dW", &w, dw) { f(x, $0, b) }
        check("linear db", &b, db) { f(x, w, $0) }
    }

    func testRMSNorm() {
        var rng = SeededRandom(state: 2)
        let n = 3, c = 6
        var x = rng.array(n * c), w = rng.array(c).map { 1 + $0 * 0.3 }
        let r = rng.array(n * c)
        func f(_ x: [Double], _ w: [Double]) -> Double {
            var y = [Double](repeating: 0, count: n * c), rs = [Double](repeating: 0, count: n)
            rmsnormForward(&y, &rs, x, w, n: n, c: c, eps: 1e-5)
            return dot(y, r)
        }
        var y = [Double](repeating: 0, count: n * c), rs = [Double](repeating: 0, count: n)
        rmsnormForward(&y, &rs, x, w, n: n, c: c, eps: 1e-5)
        var dx = [Double](repeating: 0, count: n * c), dw = [Double](repeating: 0, count: c)
        rmsnormBackward(dinp: &dx, dweight: &dw, dout: r, inp: x, weight: w, rstd: rs, n: n, c: c)
        check("rmsnorm dx", &x, dx) { f($0, w) }
        check("rmsnorm dw", &w, dw) { f(x, $0) }
    }

    func testRoPEWithLlama3Scaling() {
        var rng = SeededRandom(state: 3)
        let t = 5, b = 2, heads = 2, hd = 8
        var rope = RopeConfig()
        rope.kind = .llama3; rope.factor = 4; rope.lowFreqFactor = 1; rope.highFreqFactor = 4; rope.originalMaxPositions = 8
        let tables = RopeTables<Double>(invFreq: rope.inverseFrequencies(headDim: hd), seqLen: t)
        let n = b * t
        var x = rng.array(n * heads * hd)
        let r = rng.array(n * heads * hd)
        func f(_ x: [Double]) -> Double {
            var y = x
            ropeApply(&y, tables, n: n, heads: heads, hd: hd, inverse: false)
            return dot(y, r)
        }
        var dx = r
        ropeApply(&dx, tables, n: n, heads: heads, hd: hd, inverse: true)
        check("rope dx", &x, dx, f)
    }

    func testCausalGroupedQueryAttention() {
        var rng = SeededRandom(state: 4)
        let b = 2, t = 5, nh = 4, nkv = 2, hd = 3
        let n = b * t
        var q = rng.array(n * nh * hd), k = rng.array(n * nkv * hd), v = rng.array(n * nkv * hd)
        let r = rng.array(n * nh * hd)
        var scratch = [Double](repeating: 0, count: t * t), scratch2 = scratch
        func forward(_ q: [Double], _ k: [Double], _ v: [Double]) -> ([Double], [Double]) {
            var out = [Double](repeating: 0, count: n * nh * hd), lse = [Double](repeating: 0, count: b * nh * t)
            attentionForward(out: &out, lse: &lse, q: q, k: k, v: v, scratch: &scratch, b: b, t: t, nh: nh, nkv: nkv, hd: hd)
            return (out, lse)
        }
        let (out, lse) = forward(q, k, v)
        var dq = [Double](repeating: 0, count: q.count), dk = [Double](repeating: 0, count: k.count)
        var dv = [Double](repeating: 0, count: v.count)
        attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: r, q: q, k: k, v: v, out: out, lse: lse,
                          scratchP: &scratch, scratchD: &scratch2, b: b, t: t, nh: nh, nkv: nkv, hd: hd)
        check("attention dq", &q, dq) { dot(forward($0, k, v).0, r) }
        check("attention dk", &k, dk) { dot(forward(q, $0, v).0, r) }
        check("attention dv", &v, dv) { dot(forward(q, k, $0).0, r) }
        // Causality: the output of position 0 depends on nothing after it.
        var k2 = k
        k2[(1 * nkv) * hd] += 1
        let (out2, _) = forward(q, k2, v)
        for h in 0..<nh { XCTAssertEqual(out[h * hd], out2[h * hd], "position 0 saw a later key") }
    }

    func testSwiGLU() {
        var rng = SeededRandom(state: 5)
        let count = 12
        var g = rng.array(count, scale: 3), u = rng.array(count)
        let r = rng.array(count)
        func f(_ g: [Double], _ u: [Double]) -> Double {
            var a = [Double](repeating: 0, count: count)
            swigluForward(&a, g, u, count: count)
            return dot(a, r)
        }
        var dg = [Double](repeating: 0, count: count), du = dg
        swigluBackward(dgate: &dg, dup: &du, dact: r, gate: g, up: u, count: count)
        check("swiglu dgate", &g, dg) { f($0, u) }
        check("swiglu dup", &u, du) { f(g, $0) }
    }

    func testCrossEntropy() {
        var rng = SeededRandom(state: 6)
        let t = 4, v = 7
        var logits = rng.array(t * v, scale: 2)
        let ids: [UInt32] = [3, 0, 6, 2]
        func f(_ l: [Double]) -> Double {
            var copy = l
            return crossEntropy(&copy, ids: ids, t: t, v: v, gradScale: nil)
        }
        var grad = logits
        let total = crossEntropy(&grad, ids: ids, t: t, v: v, gradScale: 1)
        XCTAssertEqual(total, f(logits), accuracy: 1e-12)
        XCTAssertEqual(grad[(t - 1) * v..<t * v].map(abs).max(), 0, "the last position has no target")
        check("cross-entropy dlogits", &logits, grad, f)
    }

    func testEmbedding() {
        var rng = SeededRandom(state: 7)
        let vocab = 5, h = 3
        let ids: [UInt32] = [4, 1, 4, 0]
        var table = rng.array(vocab * h)
        let r = rng.array(ids.count * h)
        func f(_ tb: [Double]) -> Double {
            var out = [Double](repeating: 0, count: ids.count * h)
            embeddingForward(&out, ids, tb, n: ids.count, h: h)
            return dot(out, r)
        }
        var dt = [Double](repeating: 0, count: vocab * h)
        embeddingBackward(&dt, r, ids, n: ids.count, h: h)
        check("embedding dtable", &table, dt, f)
    }

    /// The whole stage composed (embedding, layers with every bias, GQA, tied head, loss), in Double:
    /// the loss gradient of a sample of every tensor's elements against finite differences.
    func testWholeModelGradientInDouble() throws {
        var rope = RopeConfig()
        rope.theta = 1000
        for tied in [true, false] {
            let c = ModelConfig(
                modelType: "llama", vocabSize: 11, hidden: 8, intermediate: 12, layers: 2, heads: 4, kvHeads: 2,
                headDim: 4, rmsEps: 1e-5, tieEmbeddings: tied, qkvBias: true, attentionOutputBias: true, mlpBias: true,
                rope: rope)
            var rng = SeededRandom(state: tied ? 8 : 9)
            let params = ParameterSet<Double>(config: c, part: .whole(c))
            for s in params.specs {
                let isNorm = s.shape.count == 1 && s.localName.contains("norm")
                for j in 0..<s.count { params.values[s.offset + j] = isNorm ? 1 + 0.2 * rng.next() : 0.5 * rng.next() }
            }
            let t = 5
            let stage = Stage<Double>(config: c, params: params, seqLen: t, maxBatch: 2)
            let ids: [UInt32] = (0..<(3 * t)).map { _ in UInt32((rng.next() + 1) * 5.4) }
            let data = TokenWindows(path: "memory", tokens: ids, seqLen: t)
            let windows = [0, 1, 2]
            _ = LocalEngine.run(stage, data: data, windows: windows, microBatch: 2, backward: true)
            let grads = params.grads!.array
            for s in params.specs {
                // Up to 6 elements per tensor, spread over it.
                let picks = Set((0..<6).map { $0 * s.count / 6 })
                var fdVals: [Double] = [], anVals: [Double] = []
                for j in picks.sorted() {
                    let idx = s.offset + j
                    let saved = params.values[idx]
                    params.values[idx] = saved + eps
                    let plus = LocalEngine.run(stage, data: data, windows: windows, microBatch: 2, backward: false).loss
                    params.values[idx] = saved - eps
                    let minus = LocalEngine.run(stage, data: data, windows: windows, microBatch: 2, backward: false).loss
                    params.values[idx] = saved
                    fdVals.append((plus - minus) / (2 * eps))
                    anVals.append(grads[idx])
                }
                let scale = max(fdVals.map(abs).max()!, 1e-9)
                let diff = zip(fdVals, anVals).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(diff / scale, tolerance, "tied=\(tied) \(s.name): relative error \(diff / scale)")
            }
        }
    }
}
