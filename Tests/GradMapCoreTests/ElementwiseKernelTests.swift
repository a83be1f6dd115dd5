// The vectorised float32 kernels of CKernels/elementwise.c against the generic loops in Double that the
// finite-difference tests check (the same function names, F = Double), on sizes that leave lane remainders.
//
// Tolerances: float32 carries 24 bits (6e-8 relative per rounding); a softmax or cross-entropy row is a few
// hundred roundings deep in the worst path (the sum), so 2e-6 relative to the largest magnitude is loose for
// a correct kernel and far below any wrong term (a missing element or lane moves a result by >= 1e-3).
import CKernels
import XCTest

@testable import GradMapKernels
@testable import GradMapRuntime

final class ElementwiseKernelTests: XCTestCase {
    let tolerance = 2e-6

    func assertClose(_ label: String, _ f: [Float], _ d: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(f.count, d.count, label, file: file, line: line)
        let scale = max(d.map(abs).max() ?? 0, 1e-30)
        let diff = zip(f, d).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThan(diff / scale, tolerance, "\(label): relative error \(diff / scale)", file: file, line: line)
    }

    /// gm_exp against Double's exp: within 2 ulp of float32 on [-87.3, 88], 0 below it, e^88 above.
    func testExponential() {
        let xs: [Float] = (0..<20001).map { -90 + Float($0) * (178.0 / 20000) } + [0, -0, 1e-30, 88, -87.3, -87.4, -200]
        var ys = [Float](repeating: .nan, count: xs.count)
        gm_exp(xs, &ys, xs.count)
        var worst = 0.0
        for (x, y) in zip(xs, ys) {
            if x < -87.3 {
                XCTAssertEqual(y, 0, "exp(\(x))")
                continue
            }
            let exact = Foundation.exp(Double(x))
            let ulp = Double(Float(exact).ulp)
            worst = max(worst, abs(Double(y) - exact) / ulp)
        }
        XCTAssertLessThan(worst, 2, "largest error \(worst) ulp")
        print("gm_exp: largest error \(worst) ulp over [-87.3, 88]")
        var one: Float = 0
        gm_exp([0], &one, 1)
        XCTAssertEqual(one, 1)
    }

    func testAttentionRowsAgainstTheDoubleKernels() {
        var rng = SeededRandom(state: 11)
        // t = 37 leaves remainders after 16-wide lanes; hd = 20 likewise for the dot product.
        let b = 2, t = 37, nh = 4, nkv = 2, hd = 20
        let n = b * t
        let q = rng.array(n * nh * hd, scale: 2), k = rng.array(n * nkv * hd, scale: 2)
        let v = rng.array(n * nkv * hd), r = rng.array(n * nh * hd)
        let d = attention(q, k, v, r, b: b, t: t, nh: nh, nkv: nkv, hd: hd)
        let f = attention(q.map { Float($0) }, k.map { Float($0) }, v.map { Float($0) }, r.map { Float($0) },
                          b: b, t: t, nh: nh, nkv: nkv, hd: hd)
        for i in 0..<5 { assertClose("attention \(["out", "lse", "dq", "dk", "dv"][i])", f[i], d[i]) }
    }

    /// out, lse, dq, dk, dv of one attention forward and backward with dout = r.
    func attention<F: Real>(_ q: [F], _ k: [F], _ v: [F], _ r: [F], b: Int, t: Int, nh: Int, nkv: Int, hd: Int) -> [[F]] {
        var out = [F](repeating: 0, count: b * t * nh * hd), lse = [F](repeating: 0, count: b * nh * t)
        var s1 = [F](repeating: 0, count: t * t), s2 = s1
        attentionForward(out: &out, lse: &lse, q: q, k: k, v: v, scratch: &s1, b: b, t: t, nh: nh, nkv: nkv, hd: hd)
        var dq = [F](repeating: 0, count: q.count), dk = [F](repeating: 0, count: k.count), dv = [F](repeating: 0, count: v.count)
        attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: r, q: q, k: k, v: v, out: out, lse: lse,
                          scratchP: &s1, scratchD: &s2, b: b, t: t, nh: nh, nkv: nkv, hd: hd)
        return [out, lse, dq, dk, dv]
    }

    func testSwiGLUAgainstTheDoubleKernels() {
        var rng = SeededRandom(state: 12)
        let count = 16384 + 16 * 3 + 5  // more than one thread chunk, and a lane remainder
        let g = rng.array(count, scale: 12), u = rng.array(count), r = rng.array(count)
        var aD = [Double](repeating: 0, count: count), dgD = aD, duD = aD
        swigluForward(&aD, g, u, count: count)
        swigluBackward(dgate: &dgD, dup: &duD, dact: r, gate: g, up: u, count: count)
        let gf = g.map { Float($0) }, uf = u.map { Float($0) }, rf = r.map { Float($0) }
        var aF = [Float](repeating: 0, count: count), dgF = aF, duF = aF
        swigluForward(&aF, gf, uf, count: count)
        swigluBackward(dgate: &dgF, dup: &duF, dact: rf, gate: gf, up: uf, count: count)
        assertClose("swiglu act", aF, aD)
        assertClose("swiglu dgate", dgF, dgD)
        assertClose("swiglu dup", duF, duD)
    }

    func testCrossEntropyAgainstTheDoubleKernel() {
        var rng = SeededRandom(state: 13)
        let t = 9, v = 1003  // v leaves a remainder after 8-wide lanes
        let logits = rng.array(t * v, scale: 6)
        let ids = (0..<t).map { UInt32(($0 * 389 + 17) % v) }
        var gD = logits
        let lossD = crossEntropy(&gD, ids: ids, t: t, v: v, gradScale: 0.25)
        var gF = logits.map { Float($0) }
        let lossF = crossEntropy(&gF, ids: ids, t: t, v: v, gradScale: Float(0.25))
        var plain = logits.map { Float($0) }
        let lossOnly = crossEntropy(&plain, ids: ids, t: t, v: v, gradScale: nil)
        XCTAssertEqual(lossF, lossD, accuracy: tolerance * abs(lossD))
        XCTAssertEqual(lossOnly, lossF, "the loss does not depend on whether the gradient is wanted")
        assertClose("cross-entropy dlogits", gF, gD)
        XCTAssertEqual(plain, logits.map { Float($0) }, "without a gradient the logits are left as they were")
    }

    /// The BF16 rounding of product inputs: nearest even, infinities and NaNs unrounded, rows at a stride.
    func testBF16ConversionRoundsToNearestEven() {
        let values: [Float] = [1, 1 + 1.0 / 256, 1 + 3.0 / 512, 1 + 1.0 / 512, Float(bitPattern: 0x801b_3d8f), .infinity, -.infinity,
                               Float(bitPattern: 0x7fc0_1234), 3.3895314e38, 0.1, -0.1]
        let ld = values.count + 3
        var x = [Float](repeating: 7, count: 2 * ld)
        for (i, v) in values.enumerated() { x[i] = v; x[ld + i] = -v }
        var y = [UInt16](repeating: 0, count: 2 * values.count)
        gm_bf16_convert(x, Int32(values.count), Int32(ld), &y, 0, 2)
        for r in 0..<2 {
            for (i, v0) in values.enumerated() {
                let v = r == 0 ? v0 : -v0
                let u = v.bitPattern
                let expected: UInt16
                if u & 0x7f80_0000 == 0x7f80_0000 {
                    expected = UInt16(u >> 16)
                } else {
                    // Nearest even, written as the three cases of the dropped half.
                    let low = u & 0xffff, high = u >> 16
                    let up = low > 0x8000 || (low == 0x8000 && high & 1 == 1)
                    expected = UInt16(truncatingIfNeeded: up ? high + 1 : high)
                }
                XCTAssertEqual(y[r * values.count + i], expected, "bf16(\(v))")
            }
        }
    }
}
