// Floats → ggml blocks, for the one tensor a pruned GGUF cannot copy (the compensated ffn_down). Q4_1 follows
// ggml's reference quantize_row_q4_1 (as gguf-py's quants.quantize does, in float32 throughout), so a file
// re-quantised here holds the bytes llama.cpp's own tools would write for the same values.
import Foundation

/// ggml types `quantize` writes: F32, F16, BF16 and Q4_1.
public let quantizableGGMLTypes: Set<UInt32> = [0, 1, 30, 3]

/// Encodes `count` floats (whole blocks) of src as `type` into dst, count / blockSize · blockBytes bytes.
package func quantize(_ src: UnsafePointer<Float>, count: Int, type: GGMLType, into dst: UnsafeMutableRawPointer) {
    switch type.id {
    case 0: for i in 0..<count { dst.storeBytes(of: src[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
    case 1: for i in 0..<count { dst.storeBytes(of: floatToHalf(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case 30: for i in 0..<count { dst.storeBytes(of: floatToBF16(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case 3:  // Q4_1: f16 d = (max − min)/15, f16 m = min, 16 bytes; byte j = element j (low) and j + 16 (high)
        for b in 0..<count / 32 {
            let x = src + 32 * b
            var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
            for j in 0..<32 {
                if x[j] < lo { lo = x[j] }
                if x[j] > hi { hi = x[j] }
            }
            let d = (hi - lo) / 15
            let id: Float = d != 0 ? 1 / d : 0
            // (x − min)·id ≥ 0, so rounding half up by truncation is what both references do; 15 caps the top.
            func level(_ v: Float) -> UInt8 { UInt8(min(15, Int((v - lo) * id + 0.5))) }
            let block = dst + 20 * b
            block.storeBytes(of: floatToHalf(d).littleEndian, as: UInt16.self)
            block.storeBytes(of: floatToHalf(lo).littleEndian, toByteOffset: 2, as: UInt16.self)
            for j in 0..<16 {
                block.storeBytes(of: level(x[j]) | level(x[j + 16]) << 4, toByteOffset: 4 + j, as: UInt8.self)
            }
        }
    default:
        preconditionFailure("quantize: ggml type \(type.name) is not supported")
    }
}
