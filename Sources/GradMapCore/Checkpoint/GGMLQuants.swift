// Block decoders of the ggml quantisation types beyond Q8_0/Q4_0/Q4_1: Q5_0, Q5_1 and the k-quants (Q2_K to
// Q8_K, 256-element super-blocks). One free function per type decodes `blocks` consecutive blocks from src into
// dst (blockSize × blocks values). The arithmetic is gguf-py's `gguf.quants` (the reference transformers uses)
// step for step in Float: scale products first (d·sc, dmin·m), then one multiply and one subtract per value,
// never fused, so that the results are bit-identical to it. Layouts: ggml's block_* structs, little-endian.
import Foundation
import GradMapRuntime

@inline(__always) func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    halfToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
}

@inline(__always) func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 { p.load(fromByteOffset: offset, as: UInt8.self) }

/// Q5_0, 22 bytes per 32 values: f16 d | u32 qh (bit j = high bit of value j) | 16 bytes qs (byte j: value j in
/// the low nibble, value j + 16 in the high one). Value = d · (q − 16), q = nibble | high bit << 4.
func dequantizeQ5_0<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 22 * b, out = dst + 32 * b
        let d = f16(block, 0)
        let qh = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        for j in 0..<32 {
            let nibble = (byte(block, 6 + j % 16) >> (j < 16 ? 0 : 4)) & 0x0f
            let q = Int(nibble) | Int((qh >> UInt32(j)) & 1) << 4
            out[j] = F(Double(d * Float(q - 16)))
        }
    }
}

/// Q5_1, 24 bytes per 32 values: f16 d | f16 m | u32 qh | 16 bytes qs, packed as Q5_0. Value = d · q + m.
func dequantizeQ5_1<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 24 * b, out = dst + 32 * b
        let d = f16(block, 0), m = f16(block, 2)
        let qh = block.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        for j in 0..<32 {
            let nibble = (byte(block, 8 + j % 16) >> (j < 16 ? 0 : 4)) & 0x0f
            let q = Int(nibble) | Int((qh >> UInt32(j)) & 1) << 4
            let scaled = d * Float(q)
            out[j] = F(Double(scaled + m))
        }
    }
}

/// Q2_K, 84 bytes per 256 values: 16 bytes scales (sub-block s of 16 values: scale = low nibble, min = high
/// nibble) | 64 bytes qs | f16 d | f16 dmin. Value e = 128h + 32k + l (h < 2, k < 4, l < 32) is bits 2k..2k+1 of
/// qs[32h + l]; value = (d · scale) · q − dmin · min of sub-block e / 16.
func dequantizeQ2_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 84 * b, out = dst + 256 * b
        let d = f16(block, 80), dmin = f16(block, 82)
        for s in 0..<16 {
            let scales = byte(block, s)
            let dl = d * Float(scales & 0x0f), ml = dmin * Float(scales >> 4)
            for e in 16 * s..<16 * s + 16 {
                let h = e / 128, k = (e / 32) % 4, l = e % 32
                let q = (byte(block, 16 + 32 * h + l) >> UInt8(2 * k)) & 3
                let scaled = dl * Float(q)
                out[e] = F(Double(scaled - ml))
            }
        }
    }
}

/// Q3_K, 110 bytes per 256 values: 32 bytes hmask | 64 bytes qs | 12 bytes scales | f16 d. Value e: low two bits
/// as Q2_K's (qs[32h + l] >> 2k, e = 128h + 32k + l); high bit = bit e / 32 of hmask[e % 32], and a clear high
/// bit subtracts 4. The 16 six-bit scales (minus 32): low nibble from byte s (s < 8) or the high nibble of byte
/// s − 8, top two bits from bits 2(s / 4).. of byte 8 + s % 4. Value = (d · scale) · q.
func dequantizeQ3_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 110 * b, out = dst + 256 * b
        let d = f16(block, 108)
        for s in 0..<16 {
            let scaleLow = (byte(block, 96 + s % 8) >> (s < 8 ? 0 : 4)) & 0x0f
            let scaleHigh = (byte(block, 104 + s % 4) >> UInt8(2 * (s / 4))) & 3
            let dl = d * Float(Int(scaleLow | scaleHigh << 4) - 32)
            for e in 16 * s..<16 * s + 16 {
                let h = e / 128, k = (e / 32) % 4, l = e % 32
                let low = Int((byte(block, 32 + 32 * h + l) >> UInt8(2 * k)) & 3)
                let highBit = Int((byte(block, l) >> UInt8(e / 32)) & 1)
                out[e] = F(Double(dl * Float(low - 4 * (1 - highBit))))
            }
        }
    }
}

/// The eight six-bit (scale, min) pairs of a Q4_K/Q5_K block from its 12 scale bytes at `p`: pair j < 4 is the
/// low six bits of bytes j and 4 + j; pair j ≥ 4 takes its low nibbles from byte 8 + j − 4 (scale low, min high)
/// and its top two bits from the top bits of bytes j − 4 and j.
@inline(__always) func kScaleMin(_ p: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
    if j < 4 { return (byte(p, j) & 0x3f, byte(p, 4 + j) & 0x3f) }
    let mixed = byte(p, 4 + j)
    return ((mixed & 0x0f) | ((byte(p, j - 4) >> 2) & 0x30), (mixed >> 4) | ((byte(p, j) >> 2) & 0x30))
}

/// Q4_K, 144 bytes per 256 values: f16 d | f16 dmin | 12 bytes scales (kScaleMin) | 128 bytes qs. Value
/// e = 64c + 32h + l is nibble h of qs[32c + l]; value = (d · scale) · q − dmin · min of sub-block e / 32.
func dequantizeQ4_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    dequantizeScaleMinK(src, blocks: blocks, blockBytes: 144, nibblesAt: 16, fifthBitsAt: nil, into: dst)
}

/// Q5_K, 176 bytes per 256 values: f16 d | f16 dmin | 12 bytes scales | 32 bytes qh | 128 bytes qs. Low nibble
/// as Q4_K; the fifth bit of value e is bit e / 32 of qh[e % 32]. Value = (d · scale) · q − dmin · min.
func dequantizeQ5_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    dequantizeScaleMinK(src, blocks: blocks, blockBytes: 176, nibblesAt: 48, fifthBitsAt: 16, into: dst)
}

/// Q4_K and Q5_K: d and dmin at bytes 0 and 2, the scales at 4, the nibbles at `nibblesAt`, and for Q5_K the
/// 32 bytes of fifth bits at `fifthBitsAt`.
func dequantizeScaleMinK<F: Real>(
    _ src: UnsafeRawPointer, blocks: Int, blockBytes: Int, nibblesAt: Int, fifthBitsAt: Int?,
    into dst: UnsafeMutablePointer<F>
) {
    for b in 0..<blocks {
        let block = src + blockBytes * b, out = dst + 256 * b
        let d = f16(block, 0), dmin = f16(block, 2)
        for j in 0..<8 {
            let (sc, m) = kScaleMin(block + 4, j)
            let dl = d * Float(sc), ml = dmin * Float(m)
            let c = j / 2, shift = UInt8(4 * (j % 2))
            for l in 0..<32 {
                var q = (byte(block, nibblesAt + 32 * c + l) >> shift) & 0x0f
                if let at = fifthBitsAt { q |= ((byte(block, at + l) >> UInt8(j)) & 1) << 4 }
                let scaled = dl * Float(q)
                out[32 * j + l] = F(Double(scaled - ml))
            }
        }
    }
}

/// Q6_K, 210 bytes per 256 values: 128 bytes ql | 64 bytes qh | 16 × i8 scales | f16 d. Value e = 128h + r
/// (r < 128): low nibble r / 64 of ql[64h + r % 64]; top two bits 2(r / 32).. of qh[32h + r % 32];
/// value = (d · scale[e / 16]) · (q − 32).
func dequantizeQ6_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 210 * b, out = dst + 256 * b
        let d = f16(block, 208)
        for e in 0..<256 {
            let h = e / 128, r = e % 128
            let low = (byte(block, 64 * h + r % 64) >> UInt8(4 * (r / 64))) & 0x0f
            let high = (byte(block, 128 + 32 * h + r % 32) >> UInt8(2 * (r / 32))) & 3
            let scale = Float(Int8(bitPattern: byte(block, 192 + e / 16)))
            out[e] = F(Double((d * scale) * Float(Int(low | high << 4) - 32)))
        }
    }
}

/// Q8_K, 292 bytes per 256 values: f32 d | 256 × i8 qs | 16 × i16 bsums (sums of 16 values, used by ggml's dot
/// products, not needed to decode). Value = d · q. gguf-py has no decoder for it; ggml's dequantize_row_q8_K is
/// this product.
func dequantizeQ8_K<F: Real>(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<F>) {
    for b in 0..<blocks {
        let block = src + 292 * b, out = dst + 256 * b
        let d = Float(bitPattern: block.loadUnaligned(as: UInt32.self).littleEndian)
        for e in 0..<256 {
            out[e] = F(Double(d * Float(Int8(bitPattern: byte(block, 4 + e)))))
        }
    }
}
