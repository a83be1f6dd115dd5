// Measured matrix-product throughput: the reference every efficiency number is a fraction of, and the
// comparison of the libraries that could run a product (oneDNN, which the engine uses; OpenBLAS sgemm; the
// hand-written AMX kernel).
import Foundation
import GradMapSupport

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

    /// Who runs the product: oneDNN (the engine's path, f32 or bf16), OpenBLAS cblas_sgemm (f32 only) or the
    /// AMX kernel (bf16 only, AMX machines only).
    public enum Library: String, CaseIterable, Sendable {
        case dnnl, openblas, amx
    }

    /// Whether the AMX kernel can run here (AMX-BF16 present and granted to the process).
    public static var amxAvailable: Bool { BF16Matmul.available }

    /// oneDNN's implementation for the product a measurement runs (e.g. "brg:avx512_core").
    public static func implementation(m: Int, n: Int, k: Int, form: Form, precision: MatmulPrecision) -> String {
        (try? DNNLMatmul.implementation(
            m: m, n: n, k: k, transA: form.transA, transB: form.transB, bf16: precision == .bf16, accumulate: form == .tn)) ?? "none"
    }

    /// C[m,n] = op(A)[m,k]·op(B)[k,n] in the given form and precision (nt = A·Bᵀ, the engine's forward
    /// form), repeated for at least minSeconds. tn accumulates into C, as the weight gradient does.
    public static func measure(
        m: Int, n: Int, k: Int, minSeconds: Double, form: Form = .nt, precision: MatmulPrecision = .f32,
        library: Library = .dnnl
    ) -> Result {
        let a = Buffer<Float>(count: m * k), b = Buffer<Float>(count: n * k), c = Buffer<Float>(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        let lda = form.transA ? m : k, ldb = form.transB ? k : n
        let beta: Float = form == .tn ? 1 : 0
        func call() {
            switch library {
            case .dnnl:
                gemm(precision, form.transA, form.transB, m, n, k, 1, a.pointer, lda, b.pointer, ldb, beta, c.pointer, n)
            case .openblas:
                Float.gemm(form.transA, form.transB, m, n, k, 1, a.pointer, lda, b.pointer, ldb, beta, c.pointer, n)
            case .amx:
                BF16Matmul.gemm(form.transA, form.transB, m, n, k, a.pointer, lda, b.pointer, ldb, accumulate: beta == 1, c.pointer, n)
            }
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
