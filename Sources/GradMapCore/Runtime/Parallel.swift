// Work sharing for the loops BLAS does not cover (norms, activations, RoPE, softmax, attention heads,
// the loss). Work is cut into fixed chunks independent of the thread count, and per-chunk partial sums are
// added in chunk order, so results do not depend on how many cores a rank gets.
import Dispatch

public enum Parallel {
    /// Threads a rank may use for these loops; set with the BLAS thread count.
    public nonisolated(unsafe) static var workers = 1

    /// Runs body(chunk, range) for the chunks [k·size, (k+1)·size) of 0..<n, spread over the workers.
    @inline(__always)
    @usableFromInline package static func chunks(_ n: Int, size: Int, _ body: (Int, Range<Int>) -> Void) {
        let count = (n + size - 1) / size
        let w = min(workers, count)
        if w <= 1 {
            for c in 0..<count { body(c, (c * size)..<min(n, (c + 1) * size)) }
            return
        }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let work = body
            DispatchQueue.concurrentPerform(iterations: w) { worker in
                var c = worker
                while c < count {
                    work(c, (c * size)..<min(n, (c + 1) * size))
                    c += w
                }
            }
        }
    }

    /// Runs body(worker, item) for items 0..<n, item i on worker i mod w (w ≤ workers): each worker owns
    /// scratch space indexed by `worker`.
    @inline(__always)
    @usableFromInline package static func items(_ n: Int, maxWorkers: Int = .max, _ body: (Int, Int) -> Void) {
        let w = min(workers, n, maxWorkers)
        if w <= 1 {
            for i in 0..<n { body(0, i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let work = body
            DispatchQueue.concurrentPerform(iterations: w) { worker in
                var i = worker
                while i < n {
                    work(worker, i)
                    i += w
                }
            }
        }
    }
}
