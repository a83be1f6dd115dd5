// The SwiGLU nonlinearity of the LLaMA MLP: act = silu(gate) ⊙ up. Elementwise, shared among threads.
import CKernels
import GradMapRuntime

/// act[N·I] = silu(gate) ⊙ up, silu(x) = x · σ(x)
@inlinable package func swigluForward<F: Real>(
    _ act: UnsafeMutablePointer<F>, _ gate: UnsafePointer<F>, _ up: UnsafePointer<F>, count: Int
) {
    if let a = asFloat(act), let g = asFloat(gate), let u = asFloat(up) {
        Parallel.chunks(count, size: 16384) { _, r in
            gm_swiglu_forward(a + r.lowerBound, g + r.lowerBound, u + r.lowerBound, r.count)
        }
        return
    }
    Parallel.chunks(count, size: 16384) { _, range in
        for i in range {
            let g = gate[i]
            act[i] = g / (1 + F.exp(-g)) * up[i]
        }
    }
}

/// dgate = dact ⊙ up ⊙ σ(g)(1 + g(1 - σ(g)));  dup = dact ⊙ silu(g). Overwrites dgate and dup.
@inlinable package func swigluBackward<F: Real>(
    dgate: UnsafeMutablePointer<F>, dup: UnsafeMutablePointer<F>,
    dact: UnsafePointer<F>, gate: UnsafePointer<F>, up: UnsafePointer<F>, count: Int
) {
    if let dg = asFloat(dgate), let du = asFloat(dup), let da = asFloat(dact), let g = asFloat(gate), let u = asFloat(up) {
        Parallel.chunks(count, size: 16384) { _, r in
            let o = r.lowerBound
            gm_swiglu_backward(dg + o, du + o, da + o, g + o, u + o, r.count)
        }
        return
    }
    Parallel.chunks(count, size: 16384) { _, range in
        for i in range {
            let g = gate[i]
            let s = 1 / (1 + F.exp(-g))
            let d = dact[i]
            dgate[i] = d * up[i] * s * (1 + g * (1 - s))
            dup[i] = d * g * s
        }
    }
}

/// y[i] += x[i]: the residual connections.
@inlinable package func addInPlace<F: Real>(_ y: UnsafeMutablePointer<F>, _ x: UnsafePointer<F>, count: Int) {
    Parallel.chunks(count, size: 32768) { _, range in
        for i in range { y[i] += x[i] }
    }
}
