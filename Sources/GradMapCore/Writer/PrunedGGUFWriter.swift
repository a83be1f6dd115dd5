// Writes the pruned model as a GGUF that llama.cpp loads, from the source GGUF: every kept tensor's bytes copied
// as they are (quantised blocks included), removed blocks' tensors dropped and the rest renumbered blk.0..L-K-1,
// <arch>.block_count and the per-layer metadata arrays (keys under <arch>. whose length is the block count) cut to
// the kept layers, every other key and the tokenizer written back with its type and value, data offsets aligned to
// general.alignment. The one tensor that changed, the compensated layer's ffn_down, is written from the pipeline's
// values, as F16 or re-quantised to its source type (GGUFDownStorage); ffn_down is not among the q/k rows llama.cpp
// permutes, so no float tensor needs that permutation put back. Per-layer arrays are only those under <arch>.: a
// tokenizer or general.* array may have the block count's length by chance. Rank 0 writes the file, reading the raw
// bytes from the source itself; only the rank holding the compensated layer sends it its values. Built as
// `.NAME.partial` beside NAME and renamed (PartialFolder), so a failed run leaves nothing half-written.
import Foundation
import GradMapDistributed
import GradMapFormats
import GradMapRuntime
import GradMapSupport

/// How the compensated ffn_down is stored in a pruned GGUF. On SmolLM2-135M Q4_1 (K = 8, docs/data.md) F16 keeps
/// all of the compensation's gain (held-out perplexity 58.31) for 1.2 MB more, re-quantising keeps 99 % of it
/// (58.45) at the source's size: F16 is the default.
public enum GGUFDownStorage: String, CaseIterable, Sendable {
    /// F16: the folded values rounded once, as the model in memory holds them.
    case f16
    /// The source tensor's own ggml type (Q4_1 re-quantised, F32/F16/BF16 rounded), the file's size kept.
    case source
}

public struct PrunedGGUFWriter {
    public let source: GGUFFile
    /// Original indices of the kept layers.
    public let kept: [Int]
    /// Original index of the layer whose ffn_down holds the folded compensation, nil when none was folded.
    public let compensated: Int?
    public let down: GGUFDownStorage
    let world: Communicator
    let placement: Placement
    /// This rank's current values of a (Hugging Face named) tensor, nil when the rank does not hold it.
    let values: (String) -> UnsafePointer<Float>?

    public init(pipeline: Pipeline<Float>, source: GGUFFile, kept: Set<Int>, compensated: Int?, down: GGUFDownStorage) {
        let params = pipeline.stage.params
        self.init(world: pipeline.world, placement: pipeline.placement, source: source, kept: kept, compensated: compensated,
                  down: down) { name in params.spec(name).map { UnsafePointer(params.value($0)) } }
    }

    public init(
        world: Communicator, placement: Placement, source: GGUFFile, kept: Set<Int>, compensated: Int?,
        down: GGUFDownStorage, values: @escaping (String) -> UnsafePointer<Float>?
    ) {
        self.source = source
        self.kept = kept.sorted()
        self.compensated = compensated
        self.down = down
        self.world = world
        self.placement = placement
        self.values = values
    }

    /// Refuses, before any work, a source whose ffn_down a `.source` re-quantisation could not write back.
    public static func checkSource(_ gguf: GGUFFile, down: GGUFDownStorage, compensating: Bool) throws {
        guard compensating, down == .source else { return }
        for t in gguf.tensorList where t.name.hasSuffix(".ffn_down.weight") && !quantizableGGMLTypes.contains(t.type.id) {
            throw bad(.ggufDown, down.rawValue, "\(gguf.path): tensor \(shown(t.name)) has ggml type \(t.type.name), which cannot be re-quantised; expected F32, F16, BF16 or Q4_1 (or f16)")
        }
    }

    /// New name of a source tensor, or nil when its block was removed.
    func renamed(_ name: String) -> String? {
        guard name.hasPrefix("blk.") else { return name }
        let rest = name.dropFirst(4)
        guard let dot = rest.firstIndex(of: "."), let l = Int(rest[..<dot]), String(l) == rest[..<dot] else { return name }
        guard let j = kept.firstIndex(of: l) else { return nil }
        return "blk.\(j)" + rest[dot...]
    }

    var compensatedName: String? { compensated.map { "blk.\($0).ffn_down.weight" } }

    /// The written metadata, in the source's order: block_count and per-layer arrays cut to the kept layers.
    func metadata() throws -> [(String, GGUFValue)] {
        guard let arch = try source.string("general.architecture") else { throw bad("\(source.path): missing metadata general.architecture") }
        guard let layers = try source.int(arch + ".block_count") else { throw bad("\(source.path): missing metadata \(shown(arch)).block_count") }
        return source.metadataKeys.map { key in
            let v = source.metadata[key]!
            if key == arch + ".block_count" { return (key, v.withInteger(kept.count)) }
            if key.hasPrefix(arch + "."), case .array(let t, let items) = v, items.count == layers {
                return (key, .array(t, kept.map { items[$0] }))
            }
            return (key, v)
        }
    }

    /// One tensor of the output: name, ggml dims and type, data offset, and where its bytes come from
    /// (the source tensor, copied, or nil for the compensated ffn_down).
    struct Entry {
        let name: String
        let dims: [Int]
        let type: GGMLType
        let offset: Int
        let byteCount: Int
        let copy: GGUFTensorInfo?
    }

    /// The kept tensors in the source's order, offsets aligned as the spec requires.
    func entries() -> [Entry] {
        var out: [Entry] = []
        var end = 0
        for t in source.tensorList {
            guard let name = renamed(t.name) else { continue }
            let offset = (end + source.alignment - 1) / source.alignment * source.alignment
            if t.name == compensatedName {
                let type = down == .f16 ? GGMLType.all[1]! : t.type
                let bytes = t.count / type.blockSize * type.blockBytes
                out.append(Entry(name: name, dims: t.dims, type: type, offset: offset, byteCount: bytes, copy: nil))
            } else {
                out.append(Entry(name: name, dims: t.dims, type: t.type, offset: offset, byteCount: t.byteCount, copy: t))
            }
            end = out.last!.offset + out.last!.byteCount
        }
        return out
    }

    /// Header, metadata and tensor infos, padded to the alignment (the data section starts right after).
    func header(_ entries: [Entry]) throws -> Data {
        var out = Data("GGUF".utf8)
        out.appendLE(UInt32(source.version))
        out.appendLE(UInt64(entries.count))
        let meta = try metadata()
        out.appendLE(UInt64(meta.count))
        for (key, value) in meta {
            out.appendGGUFString(key)
            out.appendLE(value.typeID)
            value.encode(into: &out)
        }
        for e in entries {
            out.appendGGUFString(e.name)
            out.appendLE(UInt32(e.dims.count))
            for d in e.dims { out.appendLE(UInt64(d)) }
            out.appendLE(e.type.id)
            out.appendLE(UInt64(e.offset))
        }
        out.append(Data(count: (source.alignment - out.count % source.alignment) % source.alignment))
        return out
    }

    /// The compensated ffn_down's values on rank 0 (sent by the replica-0 rank of the stage holding it), nil
    /// elsewhere and when nothing was folded.
    func gatherDown() throws -> [Float]? {
        guard let j = compensated else { return nil }
        let name = "model.layers.\(j).mlp.down_proj.weight"
        let count = (source.tensors["blk.\(j).ffn_down.weight"]?.count)!
        let owner = placement.layerRanges.firstIndex { $0.contains(j) }!  // rank = replica · S + stage: replica 0
        let tag = 7_701
        if world.rank == owner {
            guard let p = values(name) else { throw GradMapError.runtime("rank \(owner) does not hold \(name)") }
            let copy = Array(UnsafeBufferPointer(start: p, count: count))
            if owner == 0 { return copy }
            try copy.withUnsafeBufferPointer { try world.isend($0.baseAddress!, count: count, to: 0, tag: tag, storage: copy as AnyObject).wait() }
            return nil
        }
        guard world.rank == 0 else { return nil }
        var d = [Float](repeating: 0, count: count)
        try d.withUnsafeMutableBufferPointer { try world.recv($0.baseAddress!, count: count, from: owner, tag: tag) }
        return d
    }

    public func write(to out: String, force: Bool) throws {
        let partial = PartialFolder(out)
        do {
            let down = try world.agree { try gatherDown() }
            try world.agree {
                guard world.rank == 0 else { return }
                try build(partial, down: down)
                try partial.commit(replacing: force)
            }
        } catch {
            partial.discard()
            throw error
        }
    }

    /// Writes the whole file into the partial (rank 0).
    func build(_ partial: PartialFolder, down: [Float]?) throws {
        let list = entries()
        let head = try header(list)
        let handle = try partial.createFile()
        defer { try? handle.close() }
        try namingFile(partial.path) {
            try handle.write(contentsOf: head)
            var written = 0
            for e in list {
                if e.offset > written { try handle.write(contentsOf: Data(count: e.offset - written)) }
                if let t = e.copy {
                    let bytes = UnsafeMutableRawPointer(mutating: source.data(t))
                    try handle.write(contentsOf: Data(bytesNoCopy: bytes, count: t.byteCount, deallocator: .none))
                    source.release(t)
                } else {
                    var encoded = Data(count: e.byteCount)
                    encoded.withUnsafeMutableBytes { dst in
                        down!.withUnsafeBufferPointer { quantize($0.baseAddress!, count: $0.count, type: e.type, into: dst.baseAddress!) }
                    }
                    try handle.write(contentsOf: encoded)
                }
                written = e.offset + e.byteCount
            }
            let tail = (source.alignment - written % source.alignment) % source.alignment
            try handle.write(contentsOf: Data(count: tail))
            try handle.synchronize()
        }
    }
}

extension GGUFValue {
    /// The GGUF value type code.
    package var typeID: UInt32 {
        switch self {
        case .u8: return 0
        case .i8: return 1
        case .u16: return 2
        case .i16: return 3
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .u64: return 10
        case .i64: return 11
        case .f64: return 12
        }
    }

    /// The same integer type holding n.
    func withInteger(_ n: Int) -> GGUFValue {
        switch self {
        case .u8: return .u8(UInt8(n))
        case .i8: return .i8(Int8(n))
        case .u16: return .u16(UInt16(n))
        case .i16: return .i16(Int16(n))
        case .i32: return .i32(Int32(n))
        case .u64: return .u64(UInt64(n))
        case .i64: return .i64(Int64(n))
        default: return .u32(UInt32(n))
        }
    }

    /// The value's bytes as GGUF stores them (without its type code; an array's element type and count first).
    package func encode(into out: inout Data) {
        switch self {
        case .u8(let v): out.appendLE(v)
        case .i8(let v): out.appendLE(v)
        case .u16(let v): out.appendLE(v)
        case .i16(let v): out.appendLE(v)
        case .u32(let v): out.appendLE(v)
        case .i32(let v): out.appendLE(v)
        case .f32(let v): out.appendLE(v.bitPattern)
        case .bool(let b): out.appendLE(UInt8(b ? 1 : 0))
        case .string(let s): out.appendGGUFString(s)
        case .array(let t, let items):
            out.appendLE(t)
            out.appendLE(UInt64(items.count))
            for item in items { item.encode(into: &out) }
        case .u64(let v): out.appendLE(v)
        case .i64(let v): out.appendLE(v)
        case .f64(let v): out.appendLE(v.bitPattern)
        }
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }

    /// A GGUF string: u64 byte count, then the UTF-8 bytes.
    mutating func appendGGUFString(_ s: String) {
        let bytes = Array(s.utf8)
        appendLE(UInt64(bytes.count))
        append(contentsOf: bytes)
    }
}
