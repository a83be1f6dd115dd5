// Measured sgemm throughput: the reference every efficiency number is a fraction of.
import Foundation

public enum GemmBenchmark {
    public struct Result: Sendable {
        public let gflops: Double
        public let calls: Int
    }

    /// C[m,n] = A[m,k]·B[n,k]ᵀ (the engine's linear-layer form), repeated for at least minSeconds.
    public static func measure(m: Int, n: Int, k: Int, minSeconds: Double) -> Result {
        let a = Buffer<Float>(count: m * k), b = Buffer<Float>(count: n * k), c = Buffer<Float>(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        Float.gemm(false, true, m, n, k, 1, a.pointer, k, b.pointer, k, 0, c.pointer, n)  // warm-up
        var calls = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var now = start
        repeat {
            Float.gemm(false, true, m, n, k, 1, a.pointer, k, b.pointer, k, 0, c.pointer, n)
            calls += 1
            now = DispatchTime.now().uptimeNanoseconds
        } while Double(now - start) / 1e9 < minSeconds
        let seconds = Double(now - start) / 1e9
        return Result(gflops: 2.0 * Double(m) * Double(n) * Double(k) * Double(calls) / seconds / 1e9, calls: calls)
    }
}
