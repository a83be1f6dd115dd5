// Which arithmetic the weight-matrix products use. `f32` is cblas_sgemm, what the PyTorch float32 reference
// computes up to summation order. `bf16` rounds both inputs of every linear and lm_head product (forward,
// dL/dX and dL/dW) to BF16 and accumulates in FP32 on Intel AMX, as PyTorch's bf16 autocast does on the
// same CPUs. `wgrad-bf16` does so only for the weight-gradient products dL/dW = δᵀ·X, which feed nothing but
// the metrics' sums: the forward and every activation gradient stay exactly as in `f32`. Attention, norms,
// softmax, the loss and every sum stay FP32 in all modes.
import CKernels
import Foundation

public enum MatmulPrecision: String, CaseIterable, Sendable {
    case f32, bf16
    case wgradBF16 = "wgrad-bf16"

    /// The arithmetic of forward and dL/dX products.
    public var activations: MatmulPrecision { self == .bf16 ? .bf16 : .f32 }
    /// The arithmetic of dL/dW products.
    public var weightGradients: MatmulPrecision { self == .f32 ? .f32 : .bf16 }

    /// Whether this machine can run `bf16` (AMX-BF16 present and granted to the process by the kernel).
    public static var bf16Available: Bool { BF16Matmul.available }
}

enum BF16Matmul {
    static let available: Bool = gm_amx_available() != 0

    /// Products run one at a time per process (from the rank's main thread; only their inner blocks are
    /// spread over threads), so one scratch area serves them all; the lock keeps that true if they ever do not.
    final class Scratch: @unchecked Sendable {
        let lock = NSLock()
        private var base: UnsafeMutablePointer<UInt16>? = nil
        private var capacity = 0
        func reserve(_ count: Int) -> UnsafeMutablePointer<UInt16> {
            if count > capacity {
                base?.deallocate()
                capacity = max(count, capacity * 5 / 4)
                base = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
                    .bindMemory(to: UInt16.self, capacity: capacity)
            }
            return base!
        }
    }
    static let area = Scratch()

    /// C[m, n] (= or +=) op(A)·op(B), row-major, products of BF16-rounded inputs summed in FP32. Blocks of
    /// C are spread over Parallel.workers; each element's sum runs in the same order whatever the split.
    static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        precondition(available, "BF16 products need AMX-BF16")
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for r in 0..<m { (c + r * ldc).update(repeating: 0, count: n) } }
            return
        }
        let packedCount = gm_bf16_packed_a_count(Int32(m), Int32(k))
        let blocks = (n + Int(GM_BF16_BLOCK_COLS) - 1) / Int(GM_BF16_BLOCK_COLS)
        let scratchCount = gm_bf16_block_scratch_count(Int32(k))
        let workers = max(1, min(Parallel.workers, blocks))
        // One grow-only buffer for packed A and the workers' B panels: a fresh allocation per product would be
        // fresh pages to fault in and zero every time (8 % of a SmolLM2 step when measured).
        area.lock.lock()
        defer { area.lock.unlock() }
        let buffer = area.reserve(packedCount + workers * scratchCount)
        let packed = buffer, scratch = buffer + packedCount
        let rowBlocks = 2 * ((m + 31) / 32)
        Parallel.chunks(rowBlocks, size: 8) { _, r in
            gm_bf16_pack_a(transA ? 1 : 0, Int32(m), Int32(k), a, Int32(lda), packed, Int32(r.lowerBound), Int32(r.upperBound))
        }
        Parallel.items(blocks, maxWorkers: workers) { w, block in
            gm_bf16_gemm_block(
                packed, Int32(m), Int32(n), Int32(k), transB ? 1 : 0, b, Int32(ldb), c, Int32(ldc),
                accumulate ? 1 : 0, Int32(block), scratch + w * scratchCount)
        }
    }
}

/// C = alpha·op(A)·op(B) + beta·C in the given precision: `bf16` applies to Float with alpha 1 and beta 0 or
/// 1 (what the linear layers use); everything else is the BLAS product of F.
@inline(__always)
func gemm<F: Real>(
    _ precision: MatmulPrecision, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
    _ alpha: F, _ a: UnsafePointer<F>, _ lda: Int, _ b: UnsafePointer<F>, _ ldb: Int,
    _ beta: F, _ c: UnsafeMutablePointer<F>, _ ldc: Int
) {
    if precision == .bf16, F.self == Float.self, alpha == 1, beta == 0 || beta == 1 {
        a.withMemoryRebound(to: Float.self, capacity: 1) { af in
            b.withMemoryRebound(to: Float.self, capacity: 1) { bf in
                c.withMemoryRebound(to: Float.self, capacity: 1) { cf in
                    BF16Matmul.gemm(transA, transB, m, n, k, af, lda, bf, ldb, accumulate: beta == 1, cf, ldc)
                }
            }
        }
        return
    }
    F.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
