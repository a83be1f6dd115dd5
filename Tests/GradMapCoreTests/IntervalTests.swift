// The 95 % (Student) intervals of the perplexity protocol (method.md) against numpy/scipy
// (scripts/make_interval_fixtures.py), and the per-window losses a pass returns.
import Foundation
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapKernels
@testable import GradMapReport
@testable import GradMapSupport

final class IntervalTests: XCTestCase {
    /// numpy sums pairwise, this code in order, and x − mean cancels where the spread is small against the
    /// values: each result is within a few n·ε of the largest sample's magnitude. 1e-12 × (|result| + max|x|)
    /// (thousands of ε) is far from that and from a wrong formula (a divisor n instead of n − 1 moves the
    /// bounds by ≥ 0.4 % of the half-width, ≥ 1e-4 here).
    let tolerance = 1e-12

    func testAgainstNumpyAndScipy() throws {
        let path = Fixtures.dir("intervals") + "/intervals.json"
        let o = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        XCTAssertEqual((o["z"] as! NSNumber).doubleValue, normalQuantile975, accuracy: 1e-15)
        // Student's quantile by bisection on a Simpson integral: its error is ~1e-11 (Interval.swift), and a
        // wrong density or degrees-of-freedom count moves it by more than 1e-4.
        let t = o["t"] as! [String: NSNumber]
        XCTAssertEqual(t.count, 10)
        for (dof, value) in t {
            XCTAssertEqual(studentQuantile975(dof: Int(dof)!), value.doubleValue, accuracy: 1e-9, "t quantile, \(dof) degrees")
        }
        let cases = o["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 4)
        func check(_ got: MeanInterval, _ want: [String: Any], scale: Double, _ label: String) {
            let g = ["mean": got.mean, "sd": got.sd, "lo": got.lo, "hi": got.hi, "exp_lo": got.expInterval.0, "exp_hi": got.expInterval.1]
            for (key, value) in g {
                let w = (want[key] as! NSNumber).doubleValue
                // exp turns an absolute error of the bound into a relative one of its image.
                let bound = key.hasPrefix("exp") ? tolerance * (1 + scale) * w : tolerance * (abs(w) + scale)
                XCTAssertEqual(value, w, accuracy: bound, "\(label) \(key)")
            }
        }
        for c in cases {
            let a = (c["a"] as! [NSNumber]).map(\.doubleValue), b = (c["b"] as! [NSNumber]).map(\.doubleValue)
            let scale = (a + b).map(abs).max()!
            check(meanInterval(a), c["interval_a"] as! [String: Any], scale: scale, "n=\(a.count) interval")
            check(pairedInterval(a, b), c["paired_b_minus_a"] as! [String: Any], scale: scale, "n=\(a.count) paired")
            XCTAssertEqual(meanInterval(a).windows, a.count)
        }
    }

    func testOneWindowHasNoInterval() {
        let i = meanInterval([2.5])
        XCTAssertEqual(i.mean, 2.5)
        XCTAssertTrue(i.sd.isNaN && i.lo.isNaN && i.hi.isNaN)
        XCTAssertEqual(PruningResult.interval(i.expInterval).render(), "[null,null]")
    }

    /// The pass's per-window NLLs: their in-order sum is the loss's NLL to the bit, and each is the NLL of that
    /// window run alone (the samples do not depend on which windows share the pass): to the bit where a
    /// product's rows do not depend on how many rows share the call, else within 1e-6 relative.
    func testPassReturnsEveryWindowsNLL() throws {
        let d = Fixtures.dir("llama_gqa")
        let ckpt = try Checkpoint(path: d)
        let data = try TokenWindows(path: d + "/tokens.bin", seqLen: 8, vocabSize: ckpt.config.vocabSize)
        let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: 8, maxBatch: 2, training: false)
        let windows = Array(0..<data.windowCount)
        XCTAssertEqual(windows.count, 4)
        let r = LocalEngine.run(stage, data: data, windows: windows, microBatch: 2, backward: false)
        XCTAssertEqual(r.windowNLL.count, 4)
        var total = 0.0
        for x in r.windowNLL { total += x }
        XCTAssertEqual(total, r.nll, "in-order sum of the windows is the loss's NLL")
        // oneDNN's f32 `gemm:jit` on AVX2-only CPUs (AMD EPYC Zen 3, 2026-12-04) blocks a product's rows by the
        // call's row count, so a window's products, and so its NLL, move in the last bits with its batch-mates
        // (measured: 2e-9..3e-8 relative here). 1e-6 bounds that with 30x headroom and is far below any
        // difference between settings that the intervals compare (> 1e-3).
        let rowsIndependent = productRowsIndependentOfRowCount(rows: 8, n: ckpt.config.hidden, k: ckpt.config.hidden)
        for w in windows {
            let one = LocalEngine.run(stage, data: data, windows: [w], microBatch: 1, backward: false)
            XCTAssertEqual(one.windowNLL.count, 1)
            if rowsIndependent {
                XCTAssertEqual(one.windowNLL, [r.windowNLL[w]], "window \(w)")
            } else {
                XCTAssertEqual(one.windowNLL[0], r.windowNLL[w], accuracy: 1e-6 * abs(r.windowNLL[w]), "window \(w)")
            }
            XCTAssertEqual(r.windowLosses[w], r.windowNLL[w] / 7)
        }
        XCTAssertGreaterThan(Set(r.windowNLL).count, 1, "windows differ, so the interval has a width")
    }

    /// `eval --json`: the interval is that of the per-window losses the pass returns, around the perplexity.
    func testEvalPrintsTheInterval() throws {
        let d = Fixtures.dir("llama_gqa")
        let r = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "8", "--matmul", "f32", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try lastJSON(r)
        let ckpt = try Checkpoint(path: d)
        let data = try TokenWindows(path: d + "/tokens.bin", seqLen: 8, vocabSize: ckpt.config.vocabSize)
        let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: 8, maxBatch: 1, training: false)
        let local = LocalEngine.run(stage, data: data, windows: Array(0..<4), microBatch: 1, backward: false)
        let want = meanInterval(local.windowLosses)
        let got = (o["ppl_interval"] as! [NSNumber]).map(\.doubleValue)
        // The same float32 pass, but BLAS may split its products over another number of threads in the
        // binary than in this process: float32 rounding (~1e-7 relative per window loss), so 1e-6 relative.
        XCTAssertEqual(got[0], want.expInterval.0, accuracy: 1e-6 * got[0])
        XCTAssertEqual(got[1], want.expInterval.1, accuracy: 1e-6 * got[1])
        XCTAssertEqual((o["loss_sd"] as! NSNumber).doubleValue, want.sd, accuracy: 1e-5 * want.sd)
        XCTAssertGreaterThan(want.sd, 0)
        XCTAssertEqual(o["windows"] as? Int, 4)
        let ppl = (o["ppl"] as! NSNumber).doubleValue
        XCTAssertTrue(got[0] < ppl && ppl < got[1], "\(got) around \(ppl)")
        let text = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "8", "--matmul", "f32"])
        XCTAssertTrue(text.stdout.contains(String(format: "[95%% %.4f, %.4f]", got[0], got[1])), text.stdout)
    }
}

/// Whether this CPU's f32 product gives each row of C the same bits whatever other rows share the call: the
/// rows of one 2·rows × k by k × n product against the two halves run on their own (oneDNN, as the engine calls
/// it: A · Bᵀ with B stored [n, k]).
func productRowsIndependentOfRowCount(rows: Int, n: Int, k: Int) -> Bool {
    // Fixed values in [-1, 1) with no pattern a kernel could shortcut, so that every run probes the same product.
    func values(_ count: Int, _ stride: Int) -> [Float] { (0..<count).map { Float(($0 * stride) % 2003) / 1001.5 - 1 } }
    let a = values(2 * rows * k, 7919), b = values(n * k, 104_729)
    var both = [Float](repeating: 0, count: 2 * rows * n), halves = both
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            gemm(.f32, false, true, 2 * rows, n, k, 1, a.baseAddress!, k, b.baseAddress!, k, 0, &both, n)
            for half in 0..<2 {
                halves.withUnsafeMutableBufferPointer { c in
                    gemm(.f32, false, true, rows, n, k, 1, a.baseAddress! + half * rows * k, k, b.baseAddress!, k, 0,
                         c.baseAddress! + half * rows * n, n)
                }
            }
        }
    }
    return both == halves
}
