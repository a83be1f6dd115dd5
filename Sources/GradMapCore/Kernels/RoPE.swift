// Rotary position embedding in Hugging Face's "rotate half" layout: dimension i pairs with i + hd/2.
// Frequencies (with llama3 or linear scaling) come from RopeConfig; the tables are built once in Double.
import Foundation
import GradMapRuntime
import GradMapSupport

/// cos/sin tables [T, hd/2] for positions 0..T-1.
public struct RopeTables<F: Real>: @unchecked Sendable {
    public let cos: Buffer<F>  // [T, hd/2]
    public let sin: Buffer<F>  // [T, hd/2]
    public let seqLen: Int
    public let half: Int

    public init(invFreq: [Double], seqLen: Int) {
        half = invFreq.count
        self.seqLen = seqLen
        cos = Buffer(count: seqLen * half)
        sin = Buffer(count: seqLen * half)
        for t in 0..<seqLen {
            for i in 0..<half {
                let angle = Double(t) * invFreq[i]
                cos[t * half + i] = F(Foundation.cos(angle))
                sin[t * half + i] = F(Foundation.sin(angle))
            }
        }
    }
}

/// Rotates x[N, heads, hd] in place; token n sits at position n mod T (windows of T tokens).
/// Forward: (x1, x2) → (x1·c - x2·s, x2·c + x1·s). Backward (`inverse`): the transpose rotation.
@inline(__always)
@inlinable package func ropeApply<F: Real>(
    _ x: UnsafeMutablePointer<F>, _ tables: RopeTables<F>, n: Int, heads: Int, hd: Int, inverse: Bool
) {
    let half = hd / 2
    let t = tables.seqLen
    let cosT = tables.cos.pointer
    let sinT = tables.sin.pointer
    Parallel.chunks(n, size: 32) { _, rows in
    for r in rows {
        let pos = r % t
        let c = cosT + pos * half
        let s = sinT + pos * half
        for h in 0..<heads {
            let v = x + (r * heads + h) * hd
            if inverse {
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    v[i] = a * c[i] + b * s[i]
                    v[i + half] = b * c[i] - a * s[i]
                }
            } else {
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    v[i] = a * c[i] - b * s[i]
                    v[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }
    }
}
