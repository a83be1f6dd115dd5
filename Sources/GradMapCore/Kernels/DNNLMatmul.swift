// The linear and lm_head products through oneDNN's matmul primitive: C[m,n] = alpha·op(A)·op(B) (+ C),
// row-major, transposes and leading dimensions given to oneDNN as strides. f32 inputs, or inputs rounded to
// BF16 (nearest even) with FP32 accumulation and FP32 output. A primitive is made once per shape key and
// reused; one engine and one stream serve the process, and products run one at a time (under `lock`).
import CDNNL
import CKernels
import Foundation
import GradMapRuntime
import GradMapSupport

@usableFromInline enum DNNLMatmul {
    /// Everything a primitive is specialised for. Strides are those of the memory oneDNN reads: the caller's
    /// for f32, the dense BF16 copies for bf16.
    struct Key: Hashable {
        var m, n, k: Int
        var transA, transB: Bool
        var lda, ldb, ldc: Int
        var bf16: Bool
        var accumulate: Bool
        var alphaBits: UInt32
    }

    /// A primitive and the memory objects it runs on; each call points them at that call's buffers.
    final class Product {
        let primitive: dnnl_primitive_t
        let src: dnnl_memory_t, weights: dnnl_memory_t, dst: dnnl_memory_t
        /// oneDNN's name of the implementation it picked (e.g. "brg:avx512_core_bf16", "ref:any").
        let implementation: String
        init(primitive: dnnl_primitive_t, src: dnnl_memory_t, weights: dnnl_memory_t, dst: dnnl_memory_t, implementation: String) {
            self.primitive = primitive
            self.src = src
            self.weights = weights
            self.dst = dst
            self.implementation = implementation
        }
    }

    /// The process's engine and stream, the primitive cache and the BF16 input scratch, all behind one lock.
    final class State: @unchecked Sendable {
        let lock = NSLock()
        var engine: dnnl_engine_t? = nil
        var stream: dnnl_stream_t? = nil
        var products: [Key: Product] = [:]
        /// op(A) then op(B) as dense BF16 bits.
        private let scratch = BF16Scratch()
        func reserve(_ count: Int) -> UnsafeMutablePointer<UInt16> { scratch.reserve(count) }
    }
    static let state = State()

    /// Turns a oneDNN status into GradMapError.runtime naming the call.
    static func check(_ status: dnnl_status_t, _ what: String) throws {
        guard status != dnnl_success else { return }
        throw GradMapError.runtime("\(what) failed: \(String(cString: dnnl_status2str(status)))")
    }

    /// The engine and stream, made on first use (caller holds the lock).
    static func context() throws -> (dnnl_engine_t, dnnl_stream_t) {
        if let e = state.engine, let s = state.stream { return (e, s) }
        var e: dnnl_engine_t? = nil
        try check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create")
        var s: dnnl_stream_t? = nil
        try check(dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
        state.engine = e
        state.stream = s
        return (e!, s!)
    }

    /// A 2-D memory descriptor of rows × cols elements at the given strides.
    static func descriptor(_ rows: Int, _ cols: Int, rowStride: Int, colStride: Int, _ type: dnnl_data_type_t) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        var dims: [dnnl_dim_t] = [dnnl_dim_t(rows), dnnl_dim_t(cols)]
        var strides: [dnnl_dim_t] = [dnnl_dim_t(rowStride), dnnl_dim_t(colStride)]
        try check(dnnl_memory_desc_init_by_strides(&md, 2, &dims, type, &strides), "dnnl_memory_desc_init_by_strides")
        return md
    }

    /// The primitive for key, made and cached on first use (caller holds the lock).
    static func product(_ key: Key) throws -> Product {
        if let p = state.products[key] { return p }
        let (engine, _) = try context()
        let input = key.bf16 ? dnnl_bf16 : dnnl_f32
        // op(A)[i, p] is A[i·lda + p], or A[p·lda + i] when transposed; op(B) likewise; C is plain row-major.
        var src = try descriptor(key.m, key.k, rowStride: key.transA ? 1 : key.lda, colStride: key.transA ? key.lda : 1, input)
        var weights = try descriptor(key.k, key.n, rowStride: key.transB ? 1 : key.ldb, colStride: key.transB ? key.ldb : 1, input)
        var dst = try descriptor(key.m, key.n, rowStride: key.ldc, colStride: 1, dnnl_f32)
        var op = dnnl_matmul_desc_t()
        try check(dnnl_matmul_desc_init(&op, &src, &weights, nil, &dst), "dnnl_matmul_desc_init")

        var attr: dnnl_primitive_attr_t? = nil
        try check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        var alpha = Float(bitPattern: key.alphaBits)
        if alpha != 1 {
            try check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "dnnl_primitive_attr_set_output_scales")
        }
        if key.accumulate {
            // C += product: the sum post-op adds what dst held before (scale 1).
            var ops: dnnl_post_ops_t? = nil
            try check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
            defer { dnnl_post_ops_destroy(ops) }
            try check(dnnl_post_ops_append_sum(ops, 1), "dnnl_post_ops_append_sum")
            try check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
        }
        var pd: dnnl_primitive_desc_t? = nil
        try check(dnnl_primitive_desc_create(&pd, &op, attr, engine, nil), "dnnl_primitive_desc_create (matmul)")
        defer { dnnl_primitive_desc_destroy(pd) }
        var impl: UnsafePointer<CChar>? = nil
        try check(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl), "dnnl_primitive_desc_query")
        var primitive: dnnl_primitive_t? = nil
        try check(dnnl_primitive_create(&primitive, pd), "dnnl_primitive_create (matmul)")
        var srcMem: dnnl_memory_t? = nil, weightsMem: dnnl_memory_t? = nil, dstMem: dnnl_memory_t? = nil
        // No buffer yet: each call sets the handles.
        try check(dnnl_memory_create(&srcMem, &src, engine, nil), "dnnl_memory_create")
        try check(dnnl_memory_create(&weightsMem, &weights, engine, nil), "dnnl_memory_create")
        try check(dnnl_memory_create(&dstMem, &dst, engine, nil), "dnnl_memory_create")
        let p = Product(
            primitive: primitive!, src: srcMem!, weights: weightsMem!, dst: dstMem!,
            implementation: impl.map { String(cString: $0) } ?? "?")
        state.products[key] = p
        return p
    }

    /// oneDNN's implementation for a product kind, without running it (bench-gemm reports it; bf16Available
    /// asks it of a small BF16 product).
    static func implementation(
        m: Int, n: Int, k: Int, transA: Bool, transB: Bool, bf16: Bool, accumulate: Bool
    ) throws -> String {
        state.lock.lock()
        defer { state.lock.unlock() }
        let key = key(m, n, k, transA, transB, lda: transA ? m : k, ldb: transB ? k : n, ldc: n, bf16: bf16, accumulate: accumulate, alpha: 1)
        return try product(key).implementation
    }

    static func key(
        _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool, lda: Int, ldb: Int, ldc: Int,
        bf16: Bool, accumulate: Bool, alpha: Float
    ) -> Key {
        Key(m: m, n: n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc,
            bf16: bf16, accumulate: accumulate, alphaBits: alpha.bitPattern)
    }

    /// C[m, n] = alpha·op(A)·op(B) (+ C when accumulate), row-major; op(A) is [m, k], op(B) is [k, n]. With
    /// bf16 both inputs are first rounded to BF16 (nearest even) into the scratch, stored as they lie (so the
    /// transposes stay strides), and the product accumulates in FP32.
    @usableFromInline static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, bf16: Bool
    ) throws {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for r in 0..<m { (c + r * ldc).update(repeating: 0, count: n) } }
            return
        }
        state.lock.lock()
        defer { state.lock.unlock() }
        // libgomp keeps the thread count per calling thread; products may come from any thread.
        let threads = Int32(BLASRuntime.threads)
        if omp_get_max_threads() != threads { omp_set_num_threads(threads) }
        var srcHandle = UnsafeMutableRawPointer(mutating: a), weightsHandle = UnsafeMutableRawPointer(mutating: b)
        var key = key(m, n, k, transA, transB, lda: lda, ldb: ldb, ldc: ldc, bf16: bf16, accumulate: accumulate, alpha: alpha)
        if bf16 {
            // A is stored rowsA × colsA (op(A) or its transpose), B likewise; their dense copies have leading
            // dimension colsA, colsB.
            let rowsA = transA ? k : m, colsA = transA ? m : k
            let rowsB = transB ? n : k, colsB = transB ? k : n
            let scratch = state.reserve(rowsA * colsA + rowsB * colsB)
            let a16 = scratch, b16 = scratch + rowsA * colsA
            Parallel.chunks(rowsA, size: 64) { _, r in
                gm_bf16_convert(a, Int32(colsA), Int32(lda), a16, Int32(r.lowerBound), Int32(r.upperBound))
            }
            Parallel.chunks(rowsB, size: 64) { _, r in
                gm_bf16_convert(b, Int32(colsB), Int32(ldb), b16, Int32(r.lowerBound), Int32(r.upperBound))
            }
            srcHandle = UnsafeMutableRawPointer(a16)
            weightsHandle = UnsafeMutableRawPointer(b16)
            key.lda = colsA
            key.ldb = colsB
        }
        let p = try product(key)
        let (_, stream) = try context()
        try check(dnnl_memory_set_data_handle(p.src, srcHandle), "dnnl_memory_set_data_handle")
        try check(dnnl_memory_set_data_handle(p.weights, weightsHandle), "dnnl_memory_set_data_handle")
        try check(dnnl_memory_set_data_handle(p.dst, UnsafeMutableRawPointer(c)), "dnnl_memory_set_data_handle")
        try withUnsafeTemporaryAllocation(of: dnnl_exec_arg_t.self, capacity: 3) { args in
            args[0] = dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: p.src)
            args[1] = dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: p.weights)
            args[2] = dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: p.dst)
            try check(dnnl_primitive_execute(p.primitive, stream, 3, args.baseAddress), "dnnl_primitive_execute (matmul)")
        }
        try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }
}
