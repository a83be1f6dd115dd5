// GGUF (llama.cpp's single-file format), memory-mapped: header, typed metadata, tensor infos and the aligned
// data section are validated up front, so that loading a tensor is pointer arithmetic plus dequantisation.
// GGUFModel presents a llama or qwen2 GGUF as a Hugging Face checkpoint: HF tensor names, a llama file's q/k rows
// put back in HF order (llama.cpp permutes them for its interleaved RoPE; qwen2 uses NEOX RoPE, HF's own
// rotate-half order, so its rows are stored as HF has them) and a ModelConfig built from the metadata.
import Foundation
import GradMapSupport

// The value types are in GGUFValue.swift, the dequantisation and GGUFModel in GGUFModel.swift.

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
