// Next-token cross-entropy over one window: position t predicts token t+1; the last position has no target.
// Rows are shared among threads; each row's NLL goes to its own slot and the slots are summed in order.
import CKernels
import Foundation
import GradMapRuntime

/// Returns Σ_{t<T-1} (logsumexp(logits[t]) - logits[t, ids[t+1]]) in Double, using rowLoss[T] as scratch.
/// When `gradScale` is given, logits[T, V] is overwritten with ∂(gradScale · Σ NLL)/∂logits (row T-1 zero);
/// the exponentials of the forward are kept in place and reused for the gradient.
@inlinable package func crossEntropy<F: Real>(
    _ logits: UnsafeMutablePointer<F>, ids: UnsafePointer<UInt32>, t: Int, v: Int, gradScale: F?,
    rowLoss: UnsafeMutablePointer<Double>
) -> Double {
    Parallel.chunks(t, size: 8) { _, rows in
        for r in rows {
            let row = logits + r * v
            if r == t - 1 {
                rowLoss[r] = 0
                if gradScale != nil { row.update(repeating: 0, count: v) }
                continue
            }
            let target = Int(ids[r + 1])
            if let rowF = asFloat(row) {
                let scale = gradScale.map { Float($0.double) } ?? 0
                rowLoss[r] = gm_cross_entropy_row(rowF, Int32(v), Int32(target), scale, gradScale == nil ? 0 : 1)
                continue
            }
            var mx = row[0]
            for j in 1..<v where row[j] > mx { mx = row[j] }
            let targetLogit = row[target]
            var sum = 0.0  // Double: V terms of very different size
            if let scale = gradScale {
                for j in 0..<v {
                    let e = F.exp(row[j] - mx)
                    row[j] = e
                    sum += e.double
                }
                let k = scale / F(sum)
                for j in 0..<v { row[j] *= k }
                row[target] -= scale
            } else {
                for j in 0..<v { sum += F.exp(row[j] - mx).double }
            }
            rowLoss[r] = Foundation.log(sum) + (mx - targetLogit).double
        }
    }
    var total = 0.0
    for r in 0..<t { total += rowLoss[r] }
    return total
}

/// Convenience with its own scratch (tests).
@inlinable package func crossEntropy<F: Real>(
    _ logits: UnsafeMutablePointer<F>, ids: UnsafePointer<UInt32>, t: Int, v: Int, gradScale: F?
) -> Double {
    let scratch = UnsafeMutablePointer<Double>.allocate(capacity: t)
    defer { scratch.deallocate() }
    return crossEntropy(logits, ids: ids, t: t, v: v, gradScale: gradScale, rowLoss: scratch)
}
