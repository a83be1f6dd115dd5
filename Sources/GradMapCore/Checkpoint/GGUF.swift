// GGUF (llama.cpp's single-file format), memory-mapped: header, typed metadata, tensor infos and the aligned
// data section are validated up front, so that loading a tensor is pointer arithmetic plus dequantisation.
// GGUFModel presents a llama or qwen2 GGUF as a Hugging Face checkpoint: HF tensor names, a llama file's q/k rows
// put back in HF order (llama.cpp permutes them for its interleaved RoPE; qwen2 uses NEOX RoPE, HF's own
// rotate-half order, so its rows are stored as HF has them) and a ModelConfig built from the metadata.
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

/// Bounds-checked little-endian reads from the mapping; a read past the end names the file and the item.
struct GGUFCursor {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var pos = 0

    var remaining: Int { size - pos }

    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard n >= 0, n <= size - pos else {
            throw bad("\(path): truncated GGUF file: reading \(what()) at byte \(pos) needs \(n) bytes, file has \(size)")
        }
        defer { pos += n }
        return pos
    }

    mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let p = try take(MemoryLayout<T>.size, what())
        return T(littleEndian: base.loadUnaligned(fromByteOffset: p, as: T.self))
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let n = try load(UInt64.self, "\(what()) (length)")
        guard n <= UInt64(remaining) else {
            throw bad("\(path): truncated GGUF file: reading \(what()) at byte \(pos) needs \(n) bytes, file has \(size)")
        }
        let p = try take(Int(n), what())
        let bytes = UnsafeRawBufferPointer(start: base + p, count: Int(n))
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw bad("\(path): \(what()) at byte \(p) is not valid UTF-8")
        }
        return s
    }
}

public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata in file order, and by key.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order, and by (GGUF) name.
    public let tensorList: [GGUFTensorInfo]
    public let tensors: [String: GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    let file: MappedFile

    /// Deepest array nesting accepted (real files use one level; the limit keeps a hostile file from recursing).
    static let maxNesting = 8

    public init(path: String) throws {
        let mapped = try MappedFile(path: path)
        file = mapped
        self.path = path
        var c = GGUFCursor(base: mapped.bytes, size: mapped.size, path: path)
        let magic = try c.take(4, "the magic")
        let magicBytes = (0..<4).map { mapped.bytes.load(fromByteOffset: magic + $0, as: UInt8.self) }
        guard magicBytes == Array("GGUF".utf8) else {
            let hex = magicBytes.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw bad("\(path): not a GGUF file: expected magic \"GGUF\" (47 47 55 46), got \(hex)")
        }
        let v = try c.load(UInt32.self, "the version")
        guard v == 2 || v == 3 else {
            throw bad("\(path): GGUF version \(v) is not supported; expected 2 or 3")
        }
        version = Int(v)
        let tensorCount = try c.load(UInt64.self, "the tensor count")
        let kvCount = try c.load(UInt64.self, "the metadata count")
        // Each key/value takes at least 13 bytes and each tensor info 24: larger counts cannot fit.
        guard kvCount <= UInt64(c.remaining / 13) else {
            throw bad("\(path): truncated GGUF file: reading \(kvCount) metadata entries at byte \(c.pos) needs at least 13 bytes each, file has \(c.size)")
        }
        var keys: [String] = []
        var meta: [String: GGUFValue] = [:]
        for i in 0..<Int(kvCount) {
            let key = try c.string("metadata key \(i)")
            let type = try c.load(UInt32.self, "the type of metadata \(key)")
            let value = try GGUFFile.readValue(&c, type: type, key: key, depth: 0)
            guard meta[key] == nil else { throw bad("\(path): duplicate metadata key \(shown(key))") }
            keys.append(key)
            meta[key] = value
        }
        metadataKeys = keys
        metadata = meta

        var align = 32
        if let a = meta["general.alignment"] {
            guard case .u32(let n) = a, n > 0, n & (n - 1) == 0 else {
                throw bad("\(path): metadata general.alignment must be a u32 power of two, got \(a.typeName) \(shown(a.any))")
            }
            align = Int(n)
        }
        alignment = align

        guard tensorCount <= UInt64(c.remaining / 24) else {
            throw bad("\(path): truncated GGUF file: reading \(tensorCount) tensor infos at byte \(c.pos) needs at least 24 bytes each, file has \(c.size)")
        }
        var list: [GGUFTensorInfo] = []
        var byName: [String: GGUFTensorInfo] = [:]
        for i in 0..<Int(tensorCount) {
            let name = try c.string("the name of tensor info \(i)")
            let nDims = try c.load(UInt32.self, "tensor \(shown(name)) n_dims")
            guard (1...4).contains(nDims) else {
                throw bad("\(path): tensor \(shown(name)): n_dims \(nDims); expected 1 to 4")
            }
            var dims: [Int] = []
            var count = 1
            for d in 0..<Int(nDims) {
                let n = try c.load(UInt64.self, "tensor \(shown(name)) dims[\(d)]")
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(truncatingIfNeeded: n))
                guard n <= UInt64(Int.max), !overflow else {
                    throw bad("\(path): tensor \(shown(name)): dims[\(d)] = \(n) is too large")
                }
                dims.append(Int(n))
                count = product
            }
            let typeID = try c.load(UInt32.self, "tensor \(shown(name)) type")
            guard let type = GGMLType.all[typeID] else {
                throw bad("\(path): tensor \(shown(name)): unknown ggml type \(typeID)")
            }
            guard dims[0] % type.blockSize == 0 else {
                throw bad("\(path): tensor \(shown(name)): \(type.name) rows need a multiple of \(type.blockSize) elements; dims \(dims) have rows of \(dims[0])")
            }
            let offset = try c.load(UInt64.self, "tensor \(shown(name)) offset")
            guard offset % UInt64(align) == 0 else {
                throw bad("\(path): tensor \(shown(name)): offset \(offset) is not a multiple of the alignment \(align)")
            }
            guard byName[name] == nil else { throw bad("\(path): duplicate tensor \(shown(name))") }
            let (byteCount, tooLarge) = (count / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
            guard !tooLarge else { throw bad("\(path): tensor \(shown(name)): \(type.name) dims \(dims) are too large") }
            // Offsets past the file fail the range check below; the clamp only keeps the sums in range.
            let info = GGUFTensorInfo(
                name: name, dims: dims, type: type, offset: Int(min(offset, UInt64(Int.max / 2))), byteCount: byteCount)
            list.append(info)
            byName[name] = info
        }
        dataStart = (c.pos + align - 1) / align * align
        guard dataStart <= mapped.size else {
            throw bad("\(path): truncated GGUF file: the data section starts at byte \(dataStart), file has \(mapped.size)")
        }
        let dataBytes = mapped.size - dataStart
        for t in list where t.offset > dataBytes || t.byteCount > dataBytes - t.offset {
            throw bad("\(path): tensor \(shown(t.name)): data [\(t.offset), \(t.offset + t.byteCount)) out of range: data section has \(dataBytes) bytes (\(t.type.name) dims \(t.dims))")
        }
        var end = 0
        var previous = ""
        for t in list.sorted(by: { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }) {
            guard t.offset >= end else {
                throw bad("\(path): tensor \(shown(t.name)): data at \(t.offset) overlaps tensor \(shown(previous)), which ends at \(end)")
            }
            end = t.offset + t.byteCount
            previous = t.name
        }
        tensorList = list
        tensors = byName
    }

    static func readValue(_ c: inout GGUFCursor, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "metadata \(key)"
        switch type {
        case 0: return .u8(try c.load(UInt8.self, what))
        case 1: return .i8(try c.load(Int8.self, what))
        case 2: return .u16(try c.load(UInt16.self, what))
        case 3: return .i16(try c.load(Int16.self, what))
        case 4: return .u32(try c.load(UInt32.self, what))
        case 5: return .i32(try c.load(Int32.self, what))
        case 6: return .f32(Float(bitPattern: try c.load(UInt32.self, what)))
        case 7:
            let b = try c.load(UInt8.self, what)
            guard b <= 1 else { throw bad("\(c.path): metadata \(shown(key)): bool must be 0 or 1, got \(b)") }
            return .bool(b == 1)
        case 8: return .string(try c.string(what))
        case 9:
            guard depth < maxNesting else {
                throw bad("\(c.path): metadata \(shown(key)): arrays nested deeper than \(maxNesting) levels")
            }
            let elementType = try c.load(UInt32.self, "\(what) (array type)")
            let n = try c.load(UInt64.self, "\(what) (array length)")
            guard elementType <= 12 else {
                throw bad("\(c.path): metadata \(shown(key)): unknown array element type \(elementType); expected 0 to 12")
            }
            // Smallest encoding of one element: a check before reserving keeps a hostile length from allocating.
            let minSize = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8][Int(elementType)]
            guard n <= UInt64(c.remaining / minSize) else {
                throw bad("\(c.path): truncated GGUF file: reading \(what) at byte \(c.pos) needs \(n) × \(minSize) bytes, file has \(c.size)")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<Int(n) {
                items.append(try readValue(&c, type: elementType, key: key, depth: depth + 1))
            }
            return .array(elementType, items)
        case 10: return .u64(try c.load(UInt64.self, what))
        case 11: return .i64(try c.load(Int64.self, what))
        case 12: return .f64(Double(bitPattern: try c.load(UInt64.self, what)))
        default:
            throw bad("\(c.path): metadata \(shown(key)): unknown value type \(type); expected 0 to 12")
        }
    }

    /// Raw bytes of a tensor inside the mapping.
    public func data(_ t: GGUFTensorInfo) -> UnsafeRawPointer { file.bytes + dataStart + t.offset }

    /// Drops a tensor's pages from the resident set once it has been copied out (see SafeTensorsFile.release).
    public func release(_ t: GGUFTensorInfo) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (dataStart + t.offset + page - 1) / page * page
        let hi = (dataStart + t.offset + t.byteCount) / page * page
        guard hi > lo else { return }
        madvise(UnsafeMutableRawPointer(mutating: file.bytes + lo), hi - lo, Int32(MADV_DONTNEED))
    }

    // Typed metadata look-ups: a wrong type is an error naming the key; absent is nil.

    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.int else { throw bad("\(path): metadata \(shown(key)) must be an integer, got \(v.typeName) \(shown(v.any))") }
        return i
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        guard let d = v.double else { throw bad("\(path): metadata \(shown(key)) must be a number, got \(v.typeName)") }
        return d
    }

    public func string(_ key: String) throws -> String? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.string else { throw bad("\(path): metadata \(shown(key)) must be a string, got \(v.typeName)") }
        return s
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = metadata[key] else { return nil }
        guard let b = v.bool else { throw bad("\(path): metadata \(shown(key)) must be a bool, got \(v.typeName)") }
        return b
    }

    public func strings(_ key: String) throws -> [String]? {
        guard let v = metadata[key] else { return nil }
        guard case .array(8, let items) = v else { throw bad("\(path): metadata \(shown(key)) must be an array of strings, got \(v.typeName)") }
        return items.map { $0.string! }
    }

    public func ints(_ key: String) throws -> [Int]? {
        guard let v = metadata[key] else { return nil }
        guard let items = v.array, let ints = Optional(items.compactMap(\.int)), ints.count == items.count else {
            throw bad("\(path): metadata \(shown(key)) must be an array of integers, got \(v.typeName)")
        }
        return ints
    }

    public func doubles(_ key: String) throws -> [Double]? {
        guard let v = metadata[key] else { return nil }
        guard let items = v.array, let ds = Optional(items.compactMap(\.double)), ds.count == items.count else {
            throw bad("\(path): metadata \(shown(key)) must be an array of numbers, got \(v.typeName)")
        }
        return ds
    }
}

/// Dequantises `count` elements (whole blocks) of a supported ggml type into dst. Values are computed in Float
/// exactly as ggml and gguf-py do (d·q, d·(q − 8), d·q + m with d, m widened from f16), then widened to F.
/// Q5_0, Q5_1 and the k-quants are in GGMLQuants.swift.
func dequantize<F: Real>(_ src: UnsafeRawPointer, type: GGMLType, count: Int, into dst: UnsafeMutablePointer<F>) {
    precondition(count % type.blockSize == 0, "dequantize: \(count) elements are not whole \(type.name) blocks")
    let blocks = count / type.blockSize
    switch type.id {
    case 0: widen(src, dtype: .f32, count: count, into: dst)
    case 1: widen(src, dtype: .f16, count: count, into: dst)
    case 30: widen(src, dtype: .bf16, count: count, into: dst)
    case 8:  // Q8_0: f16 d, 32 × i8
        for b in 0..<count / 32 {
            let block = src + 34 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<32 {
                out[j] = F(Double(d * Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self)))))
            }
        }
    case 2:  // Q4_0: f16 d, 16 bytes; byte j = element j (low nibble) and j + 16 (high nibble)
        for b in 0..<count / 32 {
            let block = src + 18 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<16 {
                let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                out[j] = F(Double(d * Float(Int(q & 0x0f) - 8)))
                out[j + 16] = F(Double(d * Float(Int(q >> 4) - 8)))
            }
        }
    case 3:  // Q4_1: f16 d, f16 m, 16 bytes
        for b in 0..<count / 32 {
            let block = src + 20 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let m = halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<16 {
                let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                let lo = d * Float(q & 0x0f), hi = d * Float(q >> 4)
                out[j] = F(Double(lo + m))
                out[j + 16] = F(Double(hi + m))
            }
        }
    case 6: dequantizeQ5_0(src, blocks: blocks, into: dst)
    case 7: dequantizeQ5_1(src, blocks: blocks, into: dst)
    case 10: dequantizeQ2_K(src, blocks: blocks, into: dst)
    case 11: dequantizeQ3_K(src, blocks: blocks, into: dst)
    case 12: dequantizeQ4_K(src, blocks: blocks, into: dst)
    case 13: dequantizeQ5_K(src, blocks: blocks, into: dst)
    case 14: dequantizeQ6_K(src, blocks: blocks, into: dst)
    case 15: dequantizeQ8_K(src, blocks: blocks, into: dst)
    default:
        preconditionFailure("dequantize: ggml type \(type.name) is not supported")
    }
}

/// A llama or qwen2 GGUF as a checkpoint: Hugging Face tensor names and shapes, q/k rows in HF order, and the config.
public final class GGUFModel: TensorSource, @unchecked Sendable {
    public let file: GGUFFile
    public let config: ModelConfig
    /// Hugging Face name → GGUF tensor; tensors with no HF counterpart keep their GGUF name (and are then
    /// reported as unexpected by Checkpoint.checkNoUnexpectedTensors).
    public let hfToGGUF: [String: String]
    public var path: String { file.path }

    /// general.architecture → the Hugging Face class; only llama's q/k rows are permuted in the file.
    public static let supportedArchitectures = ["llama", "qwen2"]
    static let hfArchitecture = ["llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"]

    public init(path: String) throws {
        file = try GGUFFile(path: path)
        var map: [String: String] = [:]
        for t in file.tensorList {
            map[GGUFModel.hfName(t.name) ?? t.name] = t.name
        }
        hfToGGUF = map
        config = try GGUFModel.buildConfig(file)
    }

    /// llama.cpp's tensor name → Hugging Face's (nil when there is none).
    public static func hfName(_ gguf: String) -> String? {
        let top = [
            "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight",
        ]
        if let n = top[gguf] { return n }
        let parts = gguf.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1],
            parts[3] == "weight" || parts[3] == "bias"
        else { return nil }
        let local = [
            "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        ]
        guard let l = local[String(parts[2])] else { return nil }
        return "model.layers.\(layer).\(l).\(parts[3])"
    }

    public var tensorNames: [String] { Array(hfToGGUF.keys) }

    public func file(holding name: String) -> String { path }

    func gguf(_ name: String) throws -> GGUFTensorInfo {
        guard let g = hfToGGUF[name], let t = file.tensors[g] else { throw bad("\(path): missing tensor \(shown(name))") }
        return t
    }

    public func tensorInfo(_ name: String) throws -> (shape: [Int], dtype: String) {
        let t = try gguf(name)
        return (t.shape, t.type.name)
    }

    public func storedBytes(_ name: String) throws -> Int { try gguf(name).byteCount }

    /// Heads whose rows llama.cpp permuted (q: attention heads, k: key/value heads), nil for other tensors and
    /// for qwen2 (convert_hf_to_gguf.py permutes only for llama's interleaved RoPE; transformers' GGUF loader
    /// likewise un-permutes only llama).
    func permutedHeads(_ name: String) -> Int? {
        guard config.modelType == "llama" else { return nil }
        if name.hasSuffix("self_attn.q_proj.weight") || name.hasSuffix("self_attn.q_proj.bias") { return config.heads }
        if name.hasSuffix("self_attn.k_proj.weight") || name.hasSuffix("self_attn.k_proj.bias") { return config.kvHeads }
        return nil
    }

    public func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws {
        let t = try gguf(name)
        guard t.shape == shape else {
            throw bad("\(path): tensor \(shown(name)) (\(shown(t.name))) has wrong shape; expected \(shape), got \(t.shape)")
        }
        guard t.type.canDequantize else {
            throw bad("\(path): tensor \(shown(t.name)) (\(shown(name))) has ggml type \(t.type.id) (\(t.type.name)), which cannot be dequantized; expected one of \(GGMLType.dequantizableNames)")
        }
        let src = file.data(t)
        if let n = permutedHeads(name) {
            // llama.cpp's row g = h·hd + 2j + a holds HF row h·hd + a·hd/2 + j (view [n, hd/2, 2, in], swap 1 and 2).
            // The shape was checked above, so rows = n · hd with hd even (ModelConfig checks head_dim).
            let rows = t.shape[0], cols = t.count / rows
            guard cols % t.type.blockSize == 0 else {
                throw bad("\(path): tensor \(shown(t.name)) (\(shown(name))): \(t.type.name) rows of \(cols) elements cannot be permuted back; expected whole blocks of \(t.type.blockSize)")
            }
            let rowBytes = cols / t.type.blockSize * t.type.blockBytes
            let hd = rows / n, half = hd / 2
            for g in 0..<rows {
                let h = g / hd, r = g % hd
                let hf = h * hd + (r % 2) * half + r / 2
                dequantize(src + g * rowBytes, type: t.type, count: cols, into: dst + hf * cols)
            }
        } else {
            dequantize(src, type: t.type, count: t.count, into: dst)
        }
        file.release(t)
    }

    /// The Hugging Face config.json object a llama or qwen2 GGUF stands for, checked against the tensor shapes, and
    /// the ModelConfig parsed from it (so the same validation applies as to a folder's config.json).
    static func buildConfig(_ f: GGUFFile) throws -> ModelConfig {
        let path = f.path
        guard let arch = try f.string("general.architecture") else { throw bad("\(path): missing metadata general.architecture") }
        guard supportedArchitectures.contains(arch) else {
            throw bad("\(path): general.architecture '\(shown(arch))' is not supported; expected \(supportedArchitectures.joined(separator: ", "))")
        }
        func required(_ key: String) throws -> Int {
            guard let v = try f.int(arch + "." + key) else { throw bad("\(path): missing metadata \(shown(arch)).\(shown(key))") }
            guard v > 0 else { throw bad("\(path): metadata \(shown(arch)).\(shown(key)) must be positive, got \(v)") }
            return v
        }
        let layers = try required("block_count")
        let hidden = try required("embedding_length")
        let intermediate = try required("feed_forward_length")
        let heads = try required("attention.head_count")
        let kvHeads = try f.int(arch + ".attention.head_count_kv") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw bad("\(path): metadata \(shown(arch)).attention.head_count \(heads) is not a multiple of \(shown(arch)).attention.head_count_kv \(kvHeads)")
        }
        let headDim = try f.int(arch + ".attention.key_length") ?? hidden / heads
        if let rotary = try f.int(arch + ".rope.dimension_count"), rotary != headDim {
            throw bad("\(path): metadata \(shown(arch)).rope.dimension_count = \(rotary) disagrees with the head dimension \(headDim); partial RoPE is not supported")
        }
        guard let eps = try f.double(arch + ".attention.layer_norm_rms_epsilon") else {
            throw bad("\(path): missing metadata \(shown(arch)).attention.layer_norm_rms_epsilon")
        }
        let theta = try f.double(arch + ".rope.freq_base") ?? HFConfig.defaultRopeTheta
        guard let embd = f.tensors["token_embd.weight"] else { throw bad("\(path): missing tensor token_embd.weight") }
        guard embd.dims.count == 2 else {
            throw bad("\(path): tensor token_embd.weight must be a matrix, got shape \(embd.shape)")
        }
        let tokenCount = f.metadata["tokenizer.ggml.tokens"]?.array?.count
        let vocabKey = try f.int(arch + ".vocab_size")
        let vocab = tokenCount ?? vocabKey ?? embd.dims[1]

        // Metadata against tensor shapes: each dimension with the key that sets it.
        func check(_ key: String, _ value: Int, _ t: GGUFTensorInfo, _ dim: Int) throws {
            guard t.shape[dim] == value else {
                throw bad("\(path): metadata \(shown(key)) = \(value) disagrees with tensor \(shown(t.name)) shape \(t.shape)")
            }
        }
        try check(arch + ".embedding_length", hidden, embd, 1)
        try check(tokenCount != nil ? "tokenizer.ggml.tokens (count)" : arch + ".vocab_size", vocab, embd, 0)
        if let v = vocabKey, tokenCount != nil { try check(arch + ".vocab_size", v, embd, 0) }
        for t in f.tensorList {
            let parts = t.name.split(separator: ".")
            if parts.count == 4, parts[0] == "blk", let l = Int(parts[1]), l >= layers {
                throw bad("\(path): metadata \(shown(arch)).block_count = \(layers) disagrees with tensor \(shown(t.name))")
            }
            guard parts.count == 4, parts[0] == "blk", parts[3] == "weight" else { continue }
            let hiddenKey = arch + ".embedding_length", ffKey = arch + ".feed_forward_length"
            switch parts[2] {
            case "attn_norm", "ffn_norm": try check(hiddenKey, hidden, t, 0)
            case "attn_q":
                try check(arch + ".attention.head_count × head dim \(headDim)", heads * headDim, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "attn_k", "attn_v":
                try check(arch + ".attention.head_count_kv × head dim \(headDim)", kvHeads * headDim, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "attn_output":
                try check(hiddenKey, hidden, t, 0)
                try check(arch + ".attention.head_count × head dim \(headDim)", heads * headDim, t, 1)
            case "ffn_gate", "ffn_up":
                try check(ffKey, intermediate, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "ffn_down":
                try check(hiddenKey, hidden, t, 0)
                try check(ffKey, intermediate, t, 1)
            default: break
            }
        }
        if let norm = f.tensors["output_norm.weight"] { try check(arch + ".embedding_length", hidden, norm, 0) }

        var ropeScaling = Nullable<HFRopeScaling>.null
        let scalingType = try f.string(arch + ".rope.scaling.type")
        let linearFactor = try f.double(arch + ".rope.scaling.factor") ?? (try f.double(arch + ".rope.scale_linear"))
        switch scalingType {
        case nil, "none":
            if scalingType == nil, let factor = linearFactor, factor != 1 {
                ropeScaling = .some(HFRopeScaling(ropeType: "linear", factor: factor))
            }
        case "linear":
            guard let factor = linearFactor else { throw bad("\(path): metadata \(shown(arch)).rope.scaling.type linear needs \(shown(arch)).rope.scaling.factor") }
            ropeScaling = .some(HFRopeScaling(ropeType: "linear", factor: factor))
        case let other?:
            throw bad("\(path): metadata \(shown(arch)).rope.scaling.type '\(shown(other))' is not supported; expected none or linear")
        }

        var hf = HFConfig()
        hf.modelType = arch; hf.architectures = [hfArchitecture[arch]!]; hf.vocabSize = vocab; hf.hiddenSize = hidden
        hf.intermediateSize = intermediate; hf.numHiddenLayers = layers; hf.numAttentionHeads = heads
        hf.numKeyValueHeads = kvHeads; hf.headDim = headDim; hf.rmsNormEps = eps; hf.ropeTheta = theta
        hf.ropeScaling = ropeScaling; hf.hiddenAct = "silu"
        // qwen2 always has q/k/v biases and no output bias (ModelConfig knows): its config has no attention_bias.
        hf.attentionBias = arch == "qwen2" ? nil : f.tensors["blk.0.attn_q.bias"] != nil; hf.mlpBias = f.tensors["blk.0.ffn_gate.bias"] != nil
        hf.maxPositionEmbeddings = try f.int(arch + ".context_length") ?? 2048
        hf.tieWordEmbeddings = f.tensors["output.weight"] == nil; hf.initializerRange = 0.02
        hf.useCache = true; hf.torchDtype = "float32"; hf.dtype = "float32"
        let tokenIDs: [(String, WritableKeyPath<HFConfig, Int?>)] = [
            ("bos_token_id", \.bosTokenId), ("eos_token_id", \.eosTokenId), ("padding_token_id", \.padTokenId),
        ]
        for (key, field) in tokenIDs {
            if let id = try f.int("tokenizer.ggml." + key) {
                guard id >= 0, id < vocab else {
                    throw bad("\(path): metadata tokenizer.ggml.\(key) = \(id) is outside the vocabulary of \(vocab)")
                }
                hf[keyPath: field] = id
            }
        }
        let raw = try hf.jsonObject(source: path)
        return try ModelConfig.parse(raw, source: path)
    }
}
