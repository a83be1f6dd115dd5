// Linear layers, y = x·Wᵀ + b with W stored [out, in] as in Hugging Face checkpoints. Both directions are
// matrix products through BLAS; the bias is folded in by seeding the output rows.
import GradMapRuntime

/// out[N, O] = inp[N, I] · weight[O, I]ᵀ + bias[O]
@inline(__always)
@inlinable package func linearForward<F: Real>(
    _ out: UnsafeMutablePointer<F>, _ inp: UnsafePointer<F>,
    _ weight: UnsafePointer<F>, _ bias: UnsafePointer<F>?,
    n: Int, inDim: Int, outDim: Int, precision: MatmulPrecision = .f32
) {
    var beta: F = 0
    if let bias {
        for r in 0..<n { (out + r * outDim).update(from: bias, count: outDim) }
        beta = 1
    }
    gemm(precision.activations, false, true, n, outDim, inDim, 1, inp, inDim, weight, inDim, beta, out, outDim)
}

/// dinp[N, I] (= or +=) dout[N, O] · weight[O, I];  dweight[O, I] += doutᵀ · inp;  dbias[O] += Σ_n dout[n]
@inline(__always)
@inlinable package func linearBackward<F: Real>(
    dinp: UnsafeMutablePointer<F>?, dweight: UnsafeMutablePointer<F>?, dbias: UnsafeMutablePointer<F>?,
    dout: UnsafePointer<F>, inp: UnsafePointer<F>, weight: UnsafePointer<F>,
    n: Int, inDim: Int, outDim: Int, accumulateInput: Bool, precision: MatmulPrecision = .f32
) {
    if let dinp {
        gemm(precision.activations, false, false, n, inDim, outDim, 1, dout, outDim, weight, inDim, accumulateInput ? 1 : 0, dinp, inDim)
    }
    if let dweight {
        gemm(precision.weightGradients, true, false, outDim, inDim, n, 1, dout, outDim, inp, inDim, 1, dweight, inDim)
    }
    if let dbias {
        for r in 0..<n {
            let row = dout + r * outDim
            for o in 0..<outDim { dbias[o] += row[o] }
        }
    }
}
