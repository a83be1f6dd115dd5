// RMSNorm as in LLaMA: y = x · rsqrt(mean(x²) + eps) · w, computed in the engine's scalar type.
// Rows are independent and shared among threads; the weight gradient is summed per column block, over
// rows in order, so the result does not depend on the thread count.
import GradMapRuntime

/// out[N, C] = inp[N, C] · rstd[n] · weight[C], with rstd[N] = 1 / sqrt(mean_c inp² + eps) saved for backward.
@inlinable package func rmsnormForward<F: Real>(
    _ out: UnsafeMutablePointer<F>, _ rstd: UnsafeMutablePointer<F>,
    _ inp: UnsafePointer<F>, _ weight: UnsafePointer<F>, n: Int, c: Int, eps: F
) {
    Parallel.chunks(n, size: 32) { _, rows in
        for r in rows {
            let x = inp + r * c
            let y = out + r * c
            var ss: F = 0
            for i in 0..<c { ss += x[i] * x[i] }
            let s = 1 / (ss / F(c) + eps).squareRoot()
            rstd[r] = s
            for i in 0..<c { y[i] = x[i] * s * weight[i] }
        }
    }
}

/// dinp[N, C] += ∂L/∂inp;  dweight[C] += Σ_n dout · inp · rstd.
/// With g = w ⊙ dy: dx = rstd · g - rstd³ / C · x · Σ_c (g ⊙ x).
@inlinable package func rmsnormBackward<F: Real>(
    dinp: UnsafeMutablePointer<F>, dweight: UnsafeMutablePointer<F>?,
    dout: UnsafePointer<F>, inp: UnsafePointer<F>, weight: UnsafePointer<F>, rstd: UnsafePointer<F>,
    n: Int, c: Int
) {
    Parallel.chunks(n, size: 32) { _, rows in
        for r in rows {
            let x = inp + r * c
            let dy = dout + r * c
            let dx = dinp + r * c
            let s = rstd[r]
            var dot: F = 0
            for i in 0..<c { dot += weight[i] * dy[i] * x[i] }
            let k = s * s * s * dot / F(c)
            for i in 0..<c { dx[i] += s * weight[i] * dy[i] - k * x[i] }
        }
    }
    guard let dweight else { return }
    Parallel.chunks(c, size: 64) { _, cols in
        for r in 0..<n {
            let x = inp + r * c
            let dy = dout + r * c
            let s = rstd[r]
            for i in cols { dweight[i] += dy[i] * x[i] * s }
        }
    }
}
