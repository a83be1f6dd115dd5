// Storage dtypes of checkpoint tensors and their widening to the engine's scalar type.
import GradMapRuntime

public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case u16 = "U16", u32 = "U32", u64 = "U64"

    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 || self == .f64 }
}

/// IEEE half → Float, by bits (subnormals, infinities and NaN included).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1f)
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        let v = Float(mant) * (1.0 / 16_777_216.0)  // mant · 2^-24
        return sign == 0 ? v : -v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | (UInt32(exp + 112) << 23) | (mant << 13))
}

@inline(__always)
public func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// Float → BF16 with round-to-nearest-even; NaN stays a quiet NaN.
@inline(__always)
public func floatToBF16(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    if f.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
    let rounding = UInt32(0x7fff) + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

/// Float → IEEE half, round-to-nearest-even.
@inline(__always)
public func floatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exp = Int((bits >> 23) & 0xff)
    var mant = bits & 0x7f_ffff
    if exp == 0xff { return sign | 0x7c00 | (mant != 0 ? 0x200 : 0) }
    var e = exp - 127 + 15
    if e >= 31 { return sign | 0x7c00 }
    if e <= 0 {
        if e < -10 { return sign }
        mant |= 0x80_0000
        let shift = UInt32(14 - e)
        var half = mant >> shift
        let rem = mant & ((1 << shift) - 1)
        let halfway = UInt32(1) << (shift - 1)
        if rem > halfway || (rem == halfway && (half & 1) == 1) { half += 1 }
        return sign | UInt16(half)
    }
    var half = UInt32(e) << 10 | (mant >> 13)
    let rem = mant & 0x1fff
    if rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1) { half += 1 }
    e = Int(half >> 10)
    _ = e
    return sign | UInt16(half)
}

/// Widens `count` stored elements at `src` into dst, any float dtype → F. Called through the TensorSource
/// existential, so it is not specialised: the Float case goes to concrete loops.
func widen<F: Real>(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<F>) {
    if F.self == Float.self {
        widenToFloat(src, dtype: dtype, count: count, into: UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self))
        return
    }
    switch dtype {
    case .f32:
        for i in 0..<count { dst[i] = F(Double(src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self))) }
    case .f16:
        for i in 0..<count { dst[i] = F(Double(halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
    case .bf16:
        for i in 0..<count { dst[i] = F(Double(bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
    case .f64:
        for i in 0..<count { dst[i] = F(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    default:
        preconditionFailure("widen: \(dtype) is not a float dtype")
    }
}

func widenToFloat(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: 4 * count)
    case .f16:
        for i in 0..<count { dst[i] = halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .bf16:
        for i in 0..<count { dst[i] = bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .f64:
        for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    default:
        preconditionFailure("widen: \(dtype) is not a float dtype")
    }
}
