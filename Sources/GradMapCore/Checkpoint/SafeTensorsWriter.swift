// Deterministic safetensors writing: entries ordered by descending dtype size, then name; the JSON header
// padded with spaces to a multiple of 8 so every tensor is 8-byte aligned; "__metadata__": {"format": "pt"}.
import Foundation
import GradMapSupport

/// One tensor to write. Its bytes are produced when the writer reaches it, so a file is streamed one tensor at a
/// time and writing never holds a second copy of the model.
public struct SafeTensorsEntry {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let byteCount: Int
    let fill: (UnsafeMutableRawBufferPointer) throws -> Void

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        self.name = name; self.dtype = dtype; self.shape = shape; byteCount = bytes.count
        fill = { raw in raw.copyBytes(from: bytes) }
    }

    /// Float values, produced into a scratch of shape.product floats by `produce` when written, stored as dtype
    /// (F32, F16 or BF16; 16-bit with round-to-nearest-even).
    public init(name: String, dtype: DType, shape: [Int], produce: @escaping (UnsafeMutablePointer<Float>) throws -> Void) {
        precondition(dtype == .f32 || dtype == .f16 || dtype == .bf16, "SafeTensorsEntry: cannot store floats as \(dtype)")
        let count = shape.reduce(1, *)
        self.name = name; self.dtype = dtype; self.shape = shape; byteCount = count * dtype.size
        fill = { raw in
            if dtype == .f32 {
                try produce(raw.baseAddress!.assumingMemoryBound(to: Float.self))
                return
            }
            let values = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            defer { values.deallocate() }
            try produce(values)
            switch dtype {
            case .f16: for i in 0..<count { raw.storeBytes(of: floatToHalf(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default: for i in 0..<count { raw.storeBytes(of: floatToBF16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            }
        }
    }

    /// Float values copied now and stored as dtype.
    public init(name: String, dtype: DType, shape: [Int], values: UnsafeBufferPointer<Float>) {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        let copy = Array(values)
        self.init(name: name, dtype: dtype, shape: shape) { dst in
            copy.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: copy.count) }
        }
    }
}

public enum SafeTensorsWriter {
    /// The JSON header (space-padded so the data starts 8-byte aligned) and the entries in file order.
    static func layout(_ entries: [SafeTensorsEntry], metadata: [String: String]) -> ([UInt8], [SafeTensorsEntry]) {
        let ordered = entries.sorted { ($0.dtype.size, $1.name) > ($1.dtype.size, $0.name) }
        var json = "{"
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { k -> String in
                var s = ""
                JSONValue.escape(k, into: &s)
                s += ":"
                JSONValue.escape(metadata[k]!, into: &s)
                return s
            }
            json += "\"__metadata__\":{" + pairs.joined(separator: ",") + "}"
        }
        var offset = 0
        for e in ordered {
            if json.count > 1 { json += "," }
            JSONValue.escape(e.name, into: &json)
            let shape = e.shape.map(String.init).joined(separator: ",")
            json += ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.byteCount)]}"
            offset += e.byteCount
        }
        json += "}"
        var header = Array(json.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out = [UInt8]()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        return (out, ordered)
    }

    /// Streams the file: the header, then each tensor's bytes as it is produced (one tensor in memory at a time).
    public static func write(_ entries: [SafeTensorsEntry], to path: String) throws {
        let (header, ordered) = layout(entries, metadata: ["format": "pt"])
        guard let f = fopen(path, "wb") else { throw GradMapError.runtime("\(path): cannot write (\(String(cString: strerror(errno))))") }
        var ok = fwrite(header, 1, header.count, f) == header.count
        for e in ordered where ok {
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(e.byteCount, 1), alignment: 16)
            defer { raw.deallocate() }
            try e.fill(UnsafeMutableRawBufferPointer(rebasing: raw[0..<e.byteCount]))
            ok = fwrite(raw.baseAddress!, 1, e.byteCount, f) == e.byteCount
        }
        ok = fclose(f) == 0 && ok
        guard ok else { throw GradMapError.runtime("\(path): cannot write (\(String(cString: strerror(errno))))") }
    }
}
