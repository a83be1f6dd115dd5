// Which arithmetic the weight-matrix products use, all through oneDNN (Kernels/DNNLMatmul.swift). `f32` is
// what the PyTorch float32 reference computes up to summation order. `bf16` rounds both inputs of every linear
// and lm_head product (forward, dL/dX and dL/dW) to BF16 and accumulates in FP32, as PyTorch's bf16 autocast
// does on CPUs with BF16 instructions (AVX512-BF16, AMX). `wgrad-bf16` does so only for the weight-gradient
// products dL/dW = δᵀ·X, which feed nothing but the metrics' sums: the forward and every activation gradient
// stay exactly as in `f32`. Attention, norms, softmax, the loss and every sum stay FP32 in all modes.
import CKernels
import Foundation
import GradMapRuntime
import GradMapSupport

public enum MatmulPrecision: String, CaseIterable, Sendable {
    case f32, bf16
    case wgradBF16 = "wgrad-bf16"

    /// The arithmetic of forward and dL/dX products.
    public var activations: MatmulPrecision { self == .bf16 ? .bf16 : .f32 }
    /// The arithmetic of dL/dW products.
    public var weightGradients: MatmulPrecision { self == .f32 ? .f32 : .bf16 }

    /// Whether this machine can run `bf16`: oneDNN has a BF16 matmul here other than its reference loops
    /// (which emulate BF16 at a small fraction of the speed). GRADMAP_NO_BF16=1 stands in for a CPU without.
    public static var bf16Available: Bool { bf16Implementation != nil }

    /// What runs when `--matmul` is not given: `bf16` where this CPU has BF16 products, else `f32`. Chosen by
    /// measurement on SmolLM2 (docs/benchmarks.md, "Choosing the default --matmul"): the same removed layers
    /// at K = 4 and 8 for bi, fisher --verify-top 3 and gradmap, held-out perplexity within 0.05 %, the
    /// decision step about 1.3-1.7x faster.
    public static var machineDefault: MatmulPrecision { bf16Available ? .bf16 : .f32 }

    /// Anything but f32 needs BF16 products in oneDNN: a bad value of the matmul setting otherwise.
    public func checkAvailable() throws {
        if self != .f32 && !MatmulPrecision.bf16Available {
            throw bad(.matmul, rawValue, "this CPU has no BF16 matrix products (oneDNN finds neither AVX512-BF16 nor AMX); use f32")
        }
    }

    /// oneDNN's implementation of a BF16 product on this CPU (e.g. "brg:avx512_core_bf16"); nil when there is
    /// none but the reference.
    public static let bf16Implementation: String? = {
        if ProcessInfo.processInfo.environment["GRADMAP_NO_BF16"] == "1" { return nil }
        guard let impl = try? DNNLMatmul.implementation(m: 64, n: 64, k: 64, transA: false, transB: true, bf16: true, accumulate: false),
            !impl.hasPrefix("ref")
        else { return nil }
        return impl
    }()
}

/// The hand-written AMX kernel, kept only to compare with oneDNN on AMX machines (`bench-gemm --library amx`);
/// the engine's products all go through oneDNN.
enum BF16Matmul {
    static let available: Bool = gm_amx_available() != 0

    /// Products run one at a time per process (from the rank's main thread; only their inner blocks are
    /// spread over threads), so one scratch area serves them all; the lock keeps that true if they ever do not.
    final class Scratch: @unchecked Sendable {
        let lock = NSLock()
        let bits = BF16Scratch()
        func reserve(_ count: Int) -> UnsafeMutablePointer<UInt16> { bits.reserve(count) }
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

/// C = alpha·op(A)·op(B) + beta·C in the given precision. Float with beta 0 or 1 (every linear and lm_head
/// product) goes through oneDNN, with BF16-rounded inputs for `bf16`; anything else is the BLAS product of F.
@inline(__always)
@inlinable package func gemm<F: Real>(
    _ precision: MatmulPrecision, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
    _ alpha: F, _ a: UnsafePointer<F>, _ lda: Int, _ b: UnsafePointer<F>, _ ldb: Int,
    _ beta: F, _ c: UnsafeMutablePointer<F>, _ ldc: Int
) {
    if F.self == Float.self, beta == 0 || beta == 1 {
        a.withMemoryRebound(to: Float.self, capacity: 1) { af in
            b.withMemoryRebound(to: Float.self, capacity: 1) { bf in
                c.withMemoryRebound(to: Float.self, capacity: 1) { cf in
                    do {
                        try DNNLMatmul.gemm(
                            transA, transB, m, n, k, alpha: Float(alpha.double), af, lda, bf, ldb,
                            accumulate: beta == 1, cf, ldc, bf16: precision == .bf16)
                    } catch {
                        productFailed(error)
                    }
                }
            }
        }
        return
    }
    precondition(precision == .f32, "BF16 products take Float with beta 0 or 1")
    F.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// A product that cannot run (oneDNN refused a shape or ran out of memory) ends the job with one line: the
/// callers are the model's inner loops, which have no way to carry on without it.
@usableFromInline func productFailed(_ error: Error) -> Never {
    let prefix = Communicator.mpiStarted ? "rank \(Communicator.worldRank)" : "gradmap-dist"
    FileHandle.standardError.write(Data("\(prefix): \(error)\n".utf8))
    Communicator.abort(code: 1)
}
