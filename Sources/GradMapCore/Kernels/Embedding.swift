// Token embedding lookup and its scatter-add backward.
import GradMapRuntime

/// out[N, H] = table[ids[n], :]
@inline(__always)
@inlinable package func embeddingForward<F: Real>(
    _ out: UnsafeMutablePointer<F>, _ ids: UnsafePointer<UInt32>, _ table: UnsafePointer<F>, n: Int, h: Int
) {
    for r in 0..<n { (out + r * h).update(from: table + Int(ids[r]) * h, count: h) }
}

/// dtable[ids[n], :] += dout[n, :]
@inline(__always)
@inlinable package func embeddingBackward<F: Real>(
    _ dtable: UnsafeMutablePointer<F>, _ dout: UnsafePointer<F>, _ ids: UnsafePointer<UInt32>, n: Int, h: Int
) {
    for r in 0..<n {
        let row = dtable + Int(ids[r]) * h
        let g = dout + r * h
        for i in 0..<h { row[i] += g[i] }
    }
}
