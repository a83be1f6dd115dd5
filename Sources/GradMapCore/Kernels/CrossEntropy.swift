import Foundation

// Next-token cross-entropy over one window: position t predicts token t+1; the last position has no target.

/// Returns Σ_{t<T-1} (logsumexp(logits[t]) - logits[t, ids[t+1]]) in Double. When `gradScale` is given,
/// logits[T, V] is overwritten with ∂(gradScale · Σ NLL)/∂logits (row T-1 becomes zero).
@inline(__always)
func crossEntropy<F: Real>(
    _ logits: UnsafeMutablePointer<F>, ids: UnsafePointer<UInt32>, t: Int, v: Int, gradScale: F?
) -> Double {
    var total = 0.0
    for r in 0..<t {
        let row = logits + r * v
        if r == t - 1 {
            if gradScale != nil { row.update(repeating: 0, count: v) }
            continue
        }
        var mx = row[0]
        for j in 1..<v where row[j] > mx { mx = row[j] }
        var sum = 0.0  // Double: V terms of very different size
        for j in 0..<v { sum += F.exp(row[j] - mx).double }
        let lse = mx + F(Foundation.log(sum))
        let target = Int(ids[r + 1])
        total += (lse - row[target]).double
        if let scale = gradScale {
            for j in 0..<v { row[j] = F.exp(row[j] - lse) * scale }
            row[target] -= scale
        }
    }
    return total
}
