// Causal grouped-query attention over windows of T tokens. The forward keeps only the row log-sum-exp of
// each head's scores; the backward recomputes the probabilities one head at a time in a T×T scratch, so no
// layer ever holds a T×T matrix per head (memory O(T²) per worker, not per head and layer). Heads (forward)
// and key/value groups (backward) are shared among threads, each with its own scratch, with BLAS
// single-threaded meanwhile; every head's arithmetic is the same whatever the thread count. The row
// functions at the end run CKernels' vectorised float32 versions when F is Float.
import CKernels
import GradMapRuntime

/// Shapes: q[B·T, nh·hd], k/v[B·T, nkv·hd], out[B·T, nh·hd], lse[B, nh, T], scratch[workers, T, T].
/// Query head h reads key/value head h / (nh / nkv).
@inlinable package func attentionForward<F: Real>(
    out: UnsafeMutablePointer<F>, lse: UnsafeMutablePointer<F>,
    q: UnsafePointer<F>, k: UnsafePointer<F>, v: UnsafePointer<F>,
    scratch: UnsafeMutablePointer<F>, scratchSlots: Int = 1,
    b: Int, t: Int, nh: Int, nkv: Int, hd: Int
) {
    let qs = nh * hd, kvs = nkv * hd
    let group = nh / nkv
    let scale = 1 / F(hd).squareRoot()
    BLASRuntime.singleThreaded {
        Parallel.items(b * nh, maxWorkers: scratchSlots) { worker, item in
            let bi = item / nh, h = item % nh
            let s = scratch + worker * t * t
            let g = h / group
            let qh = q + bi * t * qs + h * hd
            let kg = k + bi * t * kvs + g * hd
            let vg = v + bi * t * kvs + g * hd
            F.gemm(false, true, t, t, hd, scale, qh, qs, kg, kvs, 0, s, t)
            let l = lse + (bi * nh + h) * t
            for i in 0..<t { l[i] = softmaxCausalRow(s + i * t, valid: i + 1, total: t) }
            F.gemm(false, false, t, hd, t, 1, s, t, vg, kvs, 0, out + bi * t * qs + h * hd, qs)
        }
    }
}

/// dq[B·T, nh·hd] is overwritten; dk, dv[B·T, nkv·hd] are accumulated into (zero them first).
/// With P = softmax(S), D_i = Σ_d dO[i,d]·O[i,d]: dS = P ⊙ (dO·Vᵀ - D), dQ = scale·dS·K, dK += scale·dSᵀ·Q,
/// dV += Pᵀ·dO. scratchP, scratchD are [workers, T, T].
@inlinable package func attentionBackward<F: Real>(
    dq: UnsafeMutablePointer<F>, dk: UnsafeMutablePointer<F>, dv: UnsafeMutablePointer<F>,
    dout: UnsafePointer<F>, q: UnsafePointer<F>, k: UnsafePointer<F>, v: UnsafePointer<F>,
    out: UnsafePointer<F>, lse: UnsafePointer<F>,
    scratchP: UnsafeMutablePointer<F>, scratchD: UnsafeMutablePointer<F>, scratchSlots: Int = 1,
    b: Int, t: Int, nh: Int, nkv: Int, hd: Int
) {
    let qs = nh * hd, kvs = nkv * hd
    let group = nh / nkv
    let scale = 1 / F(hd).squareRoot()
    BLASRuntime.singleThreaded {
        // One item per (window, kv group): the group's query heads accumulate into the same dK, dV.
        Parallel.items(b * nkv, maxWorkers: scratchSlots) { worker, item in
            let bi = item / nkv, g = item % nkv
            let sp = scratchP + worker * t * t
            let sd = scratchD + worker * t * t
            for h in (g * group)..<((g + 1) * group) {
                let base = bi * t
                let qh = q + base * qs + h * hd
                let kg = k + base * kvs + g * hd
                let vg = v + base * kvs + g * hd
                let oh = out + base * qs + h * hd
                let doh = dout + base * qs + h * hd
                let l = lse + (bi * nh + h) * t
                // Recompute P from the saved log-sum-exp.
                F.gemm(false, true, t, t, hd, scale, qh, qs, kg, kvs, 0, sp, t)
                for i in 0..<t { softmaxRecomputeRow(sp + i * t, valid: i + 1, total: t, lse: l[i]) }
                F.gemm(true, false, t, hd, t, 1, sp, t, doh, qs, 1, dv + base * kvs + g * hd, kvs)
                F.gemm(false, true, t, t, hd, 1, doh, qs, vg, kvs, 0, sd, t)
                for i in 0..<t {
                    softmaxBackwardRow(sp + i * t, sd + i * t, valid: i + 1, total: t, out: oh + i * qs, dout: doh + i * qs, hd: hd)
                }
                F.gemm(false, false, t, hd, t, scale, sd, t, kg, kvs, 0, dq + base * qs + h * hd, qs)
                F.gemm(true, false, t, hd, t, scale, sd, t, qh, qs, 1, dk + base * kvs + g * hd, kvs)
            }
        }
    }
}

/// row[0..<valid] = softmax(row[0..<valid]), row[valid..<total] = 0; returns the log-sum-exp.
@inline(__always)
@inlinable func softmaxCausalRow<F: Real>(_ row: UnsafeMutablePointer<F>, valid: Int, total: Int) -> F {
    if let r = asFloat(row) { return F(Double(gm_softmax_causal_row(r, Int32(valid), Int32(total)))) }
    var mx = row[0]
    for j in 0..<valid where row[j] > mx { mx = row[j] }
    var sum: F = 0
    for j in 0..<valid {
        let e = F.exp(row[j] - mx)
        row[j] = e
        sum += e
    }
    let inv = 1 / sum
    for j in 0..<valid { row[j] *= inv }
    (row + valid).update(repeating: 0, count: total - valid)
    return mx + F.log(sum)
}

/// The probabilities again from the saved log-sum-exp: row[j] = exp(row[j] - lse) below valid, else 0.
@inline(__always)
@inlinable func softmaxRecomputeRow<F: Real>(_ row: UnsafeMutablePointer<F>, valid: Int, total: Int, lse: F) {
    if let r = asFloat(row) { return gm_softmax_recompute_row(r, Int32(valid), Int32(total), Float(lse.double)) }
    for j in 0..<valid { row[j] = F.exp(row[j] - lse) }
    (row + valid).update(repeating: 0, count: total - valid)
}

/// ds[j] = p[j]·(ds[j] - D) below valid, else 0, with D = Σ_e out[e]·dout[e] over hd.
@inline(__always)
@inlinable func softmaxBackwardRow<F: Real>(
    _ p: UnsafeMutablePointer<F>, _ ds: UnsafeMutablePointer<F>, valid: Int, total: Int,
    out: UnsafePointer<F>, dout: UnsafePointer<F>, hd: Int
) {
    if let pf = asFloat(p), let df = asFloat(ds), let of = asFloat(out), let gf = asFloat(dout) {
        return gm_softmax_backward_row(pf, df, Int32(valid), Int32(total), of, gf, Int32(hd))
    }
    var di: F = 0
    for e in 0..<hd { di += out[e] * dout[e] }
    for j in 0..<valid { ds[j] = p[j] * (ds[j] - di) }
    (ds + valid).update(repeating: 0, count: total - valid)
}
