// GGUF's metadata values, ggml tensor types and tensor infos (GGUF.swift reads them from the file).
import Foundation

/// One metadata value, with its GGUF type kept (a round trip or a strict check may care).
public indirect enum GGUFValue: Sendable, Equatable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float), bool(Bool)
    case string(String)
    /// Element type code and elements (all of that type; arrays nest).
    case array(UInt32, [GGUFValue])
    case u64(UInt64), i64(Int64), f64(Double)

    public static let typeNames = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]

    public var typeName: String {
        switch self {
        case .u8: return "u8"
        case .i8: return "i8"
        case .u16: return "u16"
        case .i16: return "i16"
        case .u32: return "u32"
        case .i32: return "i32"
        case .f32: return "f32"
        case .bool: return "bool"
        case .string: return "string"
        case .array(let t, _): return "array of \(t < 13 ? GGUFValue.typeNames[Int(t)] : "type \(t)")"
        case .u64: return "u64"
        case .i64: return "i64"
        case .f64: return "f64"
        }
    }

    /// Any integer type as Int (nil for other types and for u64 values past Int.max).
    public var int: Int? {
        switch self {
        case .u8(let v): return Int(v)
        case .i8(let v): return Int(v)
        case .u16(let v): return Int(v)
        case .i16(let v): return Int(v)
        case .u32(let v): return Int(v)
        case .i32(let v): return Int(v)
        case .u64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .i64(let v): return Int(v)
        default: return nil
        }
    }

    /// Any number as Double. An f32 is given by its shortest decimal spelling (1e-05, not 9.9999997e-06), which
    /// is what the writer of the file meant and what a config.json should say; it rounds back to the same Float.
    public var double: Double? {
        switch self {
        case .f32(let v): return Double(v.description) ?? Double(v)
        case .f64(let v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var array: [GGUFValue]? { if case .array(_, let a) = self { return a } else { return nil } }

    /// Plain JSON-compatible value (numbers, strings, Bool, arrays).
    public var any: Any {
        switch self {
        case .string(let s): return s
        case .bool(let b): return b
        case .f32, .f64: return double!
        case .array(_, let a): return a.map(\.any)
        case .u64(let v) where v > UInt64(Int.max): return Double(v)
        default: return int!
        }
    }
}

/// A ggml tensor type: block size in elements and bytes per block.
public struct GGMLType: Sendable, Equatable {
    public let id: UInt32
    public let name: String
    public let blockSize: Int
    public let blockBytes: Int

    /// Every type llama.cpp's gguf-py lists, so that a file of any of them is validated (ranges, row sizes);
    /// the ones in `dequantizable` can be dequantised.
    public static let all: [UInt32: GGMLType] = {
        let table: [(UInt32, String, Int, Int)] = [
            (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20), (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 40), (10, "Q2_K", 256, 84), (11, "Q3_K", 256, 110),
            (12, "Q4_K", 256, 144), (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210), (15, "Q8_K", 256, 292),
            (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74), (18, "IQ3_XXS", 256, 98), (19, "IQ1_S", 256, 50),
            (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110), (22, "IQ2_S", 256, 82), (23, "IQ4_XS", 256, 136),
            (24, "I8", 1, 1), (25, "I16", 1, 2), (26, "I32", 1, 4), (27, "I64", 1, 8), (28, "F64", 1, 8),
            (29, "IQ1_M", 256, 56), (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54), (35, "TQ2_0", 256, 66),
            (39, "MXFP4", 32, 17),
        ]
        return Dictionary(uniqueKeysWithValues: table.map { ($0.0, GGMLType(id: $0.0, name: $0.1, blockSize: $0.2, blockBytes: $0.3)) })
    }()

    /// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the k-quants Q2_K to Q8_K, in that order.
    public static let dequantizableIDs: [UInt32] = [0, 1, 30, 8, 2, 3, 6, 7, 10, 11, 12, 13, 14, 15]
    public static let dequantizable = Set(dequantizableIDs)
    public var canDequantize: Bool { GGMLType.dequantizable.contains(id) }
    /// "F32, F16, ..., Q8_K" for error messages.
    public static var dequantizableNames: String { dequantizableIDs.map { all[$0]!.name }.joined(separator: ", ") }
}

public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// ggml order: dims[0] is the contiguous one (a [out, in] matrix has dims [in, out]).
    public let dims: [Int]
    public let type: GGMLType
    /// Byte offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
    public var count: Int { dims.reduce(1, *) }
    /// Row-major shape, slowest dimension first (Hugging Face order).
    public var shape: [Int] { dims.reversed() }
}
