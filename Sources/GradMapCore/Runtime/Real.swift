// The scalar types the kernels are written for. The engine runs in Float (cblas_sgemm); the same kernels in
// Double (cblas_dgemm) are what the finite-difference tests check, so there is one implementation of each op.
import CBLAS
import Foundation

public protocol Real: BinaryFloatingPoint, Sendable {
    /// C[m,n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is [m,k], op(B) is [k,n].
    static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ alpha: Self, _ a: UnsafePointer<Self>, _ lda: Int,
        _ b: UnsafePointer<Self>, _ ldb: Int,
        _ beta: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int)
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    init(_ value: Double)
    var double: Double { get }
}

@inline(__always)
private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: Real {
    @inline(__always)
    public static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
        _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inline(__always) public static func exp(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) public static func log(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) public var double: Double { Double(self) }
}

extension Double: Real {
    @inline(__always)
    public static func gemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ alpha: Double, _ a: UnsafePointer<Double>, _ lda: Int,
        _ b: UnsafePointer<Double>, _ ldb: Int,
        _ beta: Double, _ c: UnsafeMutablePointer<Double>, _ ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, trans(transA), trans(transB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inline(__always) public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inline(__always) public var double: Double { self }
}

// The kernels with a vectorised float32 version in CKernels (elementwise.c) run it when F is Float; the
// generic loops stay for Double, where the finite-difference tests check them, and the float32 versions are
// tested against those (ElementwiseKernelTests).
@inline(__always)
@inlinable package func asFloat<F: Real>(_ p: UnsafeMutablePointer<F>) -> UnsafeMutablePointer<Float>? {
    F.self == Float.self ? UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self) : nil
}

@inline(__always)
@inlinable package func asFloat<F: Real>(_ p: UnsafePointer<F>) -> UnsafePointer<Float>? {
    F.self == Float.self ? UnsafeRawPointer(p).assumingMemoryBound(to: Float.self) : nil
}
