// oneDNN's products at the model's shapes: the same bits for any thread count, in every form and precision.
import XCTest

@testable import GradMapKernels
@testable import GradMapRuntime
@testable import GradMapSupport

final class DNNLMatmulTests: XCTestCase {
    /// The three products of a linear layer with `rows` tokens, out × in weights: forward (nt), dL/dX (nn),
    /// dL/dW (tn, accumulating), as m, n, k, transA, transB, accumulate.
    static func linearProducts(rows: Int, out: Int, inp: Int) -> [(Int, Int, Int, Bool, Bool, Bool)] {
        [(rows, out, inp, false, true, false), (rows, inp, out, false, false, false), (out, inp, rows, true, false, true)]
    }

    func testModelShapesAgreeAcrossThreadCounts() throws {
        // SmolLM2 (hidden 576, intermediate 1536, kv 3 × 64, vocab 49152) at 64 and 256 tokens, 1 against 2
        // threads. No library promises the same bits here: oneDNN may split a product along k on another CPU,
        // which reorders each element's sum of k terms. Bound: two orders of a float32 sum of k products
        // differ by at most 2·k·2⁻²⁴·Σ|a||b| (+ |c| when accumulating), and Σ|a||b| ≤ k·max|a|·max|b| with
        // |a|, |b| ≤ ~1.01 here. On AMD EPYC (Zen 4) oneDNN 2.6 splits none of these along k and the bits
        // are the same (printed; docs/benchmarks.md).
        var products: [(Int, Int, Int, Bool, Bool, Bool)] = Self.linearProducts(rows: 256, out: 49152, inp: 576)
        for rows in [64, 256] {
            for (out, inp) in [(576, 576), (192, 576), (1536, 576), (576, 1536)] {
                products += Self.linearProducts(rows: rows, out: out, inp: inp)
            }
        }
        var precisions: [MatmulPrecision] = [.f32]
        if MatmulPrecision.bf16Available { precisions.append(.bf16) }
        defer { BLASRuntime.configureThreads(1) }
        for (m, n, k, transA, transB, accumulate) in products {
            let a = Buffer<Float>(count: m * k), b = Buffer<Float>(count: k * n), c0 = Buffer<Float>(count: m * n)
            for i in 0..<a.count { a[i] = Float(i % 2001 - 1000) / 997 }
            for i in 0..<b.count { b[i] = Float(i % 1999 - 999) / 1009 }
            for i in 0..<c0.count { c0[i] = Float(i % 997) / 991 }
            for precision in precisions {
                var results: [[Float]] = []
                for threads in [1, 2] {
                    BLASRuntime.configureThreads(threads)
                    let c = Buffer<Float>(count: m * n)
                    c.pointer.update(from: c0.pointer, count: m * n)
                    gemm(precision, transA, transB, m, n, k, 1, a.pointer, transA ? m : k, b.pointer, transB ? k : n,
                         accumulate ? 1 : 0, c.pointer, n)
                    results.append(Array(UnsafeBufferPointer(start: c.pointer, count: m * n)))
                }
                let bound = 2 * Double(k) * 0x1p-24 * (Double(k) * 1.03 + (accumulate ? 1.01 : 0))
                let diff = maxAbsDiff(results[0], results[1])
                XCTAssertLessThanOrEqual(diff, bound, "\(precision) \(m)x\(n)x\(k) transA \(transA) transB \(transB)")
                if diff > 0 { print("threads: \(precision) \(m)x\(n)x\(k): 1 and 2 threads differ by \(diff) (bound \(bound))") }
            }
        }
    }
}
