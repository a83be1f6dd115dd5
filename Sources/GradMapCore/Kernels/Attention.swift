// Causal grouped-query attention over windows of T tokens. The forward keeps only the row log-sum-exp of
// each head's scores; the backward recomputes the probabilities one head at a time in a T×T scratch, so no
// layer ever holds a T×T matrix per head (memory O(T²) per worker, not per head and layer). Heads (forward)
// and key/value groups (backward) are shared among threads, each with its own scratch, with BLAS
// single-threaded meanwhile; every head's arithmetic is the same whatever the thread count.

/// Shapes: q[B·T, nh·hd], k/v[B·T, nkv·hd], out[B·T, nh·hd], lse[B, nh, T], scratch[workers, T, T].
/// Query head h reads key/value head h / (nh / nkv).
func attentionForward<F: Real>(
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
            for i in 0..<t {
                let row = s + i * t
                var mx = row[0]
                for j in 0...i where row[j] > mx { mx = row[j] }
                var sum: F = 0
                for j in 0...i {
                    let e = F.exp(row[j] - mx)
                    row[j] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0...i { row[j] *= inv }
                if i + 1 < t { (row + i + 1).update(repeating: 0, count: t - i - 1) }
                l[i] = mx + F.log(sum)
            }
            F.gemm(false, false, t, hd, t, 1, s, t, vg, kvs, 0, out + bi * t * qs + h * hd, qs)
        }
    }
}

/// dq[B·T, nh·hd] is overwritten; dk, dv[B·T, nkv·hd] are accumulated into (zero them first).
/// With P = softmax(S), D_i = Σ_d dO[i,d]·O[i,d]: dS = P ⊙ (dO·Vᵀ - D), dQ = scale·dS·K, dK += scale·dSᵀ·Q,
/// dV += Pᵀ·dO. scratchP, scratchD are [workers, T, T].
func attentionBackward<F: Real>(
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
                for i in 0..<t {
                    let row = sp + i * t
                    let li = l[i]
                    for j in 0...i { row[j] = F.exp(row[j] - li) }
                    if i + 1 < t { (row + i + 1).update(repeating: 0, count: t - i - 1) }
                }
                F.gemm(true, false, t, hd, t, 1, sp, t, doh, qs, 1, dv + base * kvs + g * hd, kvs)
                F.gemm(false, true, t, t, hd, 1, doh, qs, vg, kvs, 0, sd, t)
                for i in 0..<t {
                    let o = oh + i * qs
                    let d = doh + i * qs
                    var di: F = 0
                    for e in 0..<hd { di += o[e] * d[e] }
                    let p = sp + i * t
                    let ds = sd + i * t
                    for j in 0...i { ds[j] = p[j] * (ds[j] - di) }
                    if i + 1 < t { (ds + i + 1).update(repeating: 0, count: t - i - 1) }
                }
                F.gemm(false, false, t, hd, t, scale, sd, t, kg, kvs, 0, dq + base * qs + h * hd, qs)
                F.gemm(true, false, t, hd, t, scale, sd, t, qh, qs, 1, dk + base * kvs + g * hd, kvs)
            }
        }
    }
}
