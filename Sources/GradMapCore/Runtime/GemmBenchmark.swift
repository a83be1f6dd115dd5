// Measured sgemm throughput: the reference every efficiency number is a fraction of.
import Foundation

public enum GemmBenchmark {
    public struct Result: Sendable {
        public let gflops: Double
        public let calls: Int
    }

    /// The three forms a linear layer runs: forward y = x·Wᵀ (nt), dX = dY·W (nn), dW += dYᵀ·X (tn).
    public enum Form: String, CaseIterable, Sendable {
        case nt, nn, tn
        var transA: Bool { self == .tn }
        var transB: Bool { self == .nt }
    }

    /// C[m,n] = op(A)[m,k]·op(B)[k,n] in the given form and precision (nt = A·Bᵀ, the engine's forward
    /// form), repeated for at least minSeconds. tn accumulates into C, as the weight gradient does.
    public static func measure(
        m: Int, n: Int, k: Int, minSeconds: Double, form: Form = .nt, precision: MatmulPrecision = .f32
    ) -> Result {
        let a = Buffer<Float>(count: m * k), b = Buffer<Float>(count: n * k), c = Buffer<Float>(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        let lda = form.transA ? m : k, ldb = form.transB ? k : n
        let beta: Float = form == .tn ? 1 : 0
        func call() {
            gemm(precision, form.transA, form.transB, m, n, k, 1, a.pointer, lda, b.pointer, ldb, beta, c.pointer, n)
        }
        call()  // warm-up
        var calls = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var now = start
        repeat {
            call()
            calls += 1
            now = DispatchTime.now().uptimeNanoseconds
        } while Double(now - start) / 1e9 < minSeconds
        let seconds = Double(now - start) / 1e9
        return Result(gflops: 2.0 * Double(m) * Double(n) * Double(k) * Double(calls) / seconds / 1e9, calls: calls)
    }
}
