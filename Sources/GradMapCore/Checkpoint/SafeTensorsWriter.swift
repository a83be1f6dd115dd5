// Deterministic safetensors writing: entries ordered by descending dtype size, then name; the JSON header
// padded with spaces to a multiple of 8 so every tensor is 8-byte aligned; "__metadata__": {"format": "pt"}.
import Foundation

public struct SafeTensorsEntry {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: [UInt8]

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }

    /// Float values stored as dtype (F32, F16 or BF16; 16-bit with round-to-nearest-even).
    public init(name: String, dtype: DType, shape: [Int], values: UnsafeBufferPointer<Float>) {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        var out = [UInt8](repeating: 0, count: values.count * dtype.size)
        out.withUnsafeMutableBytes { raw in
            switch dtype {
            case .f32: for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .f16: for (i, v) in values.enumerated() { raw.storeBytes(of: floatToHalf(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .bf16: for (i, v) in values.enumerated() { raw.storeBytes(of: floatToBF16(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default: preconditionFailure("SafeTensorsEntry: cannot store floats as \(dtype)")
            }
        }
        self.init(name: name, dtype: dtype, shape: shape, bytes: out)
    }
}

public enum SafeTensorsWriter {
    /// The file's bytes. `header` replaces the generated JSON header (tests use it to build broken files).
    public static func encode(_ entries: [SafeTensorsEntry], metadata: [String: String] = ["format": "pt"]) -> [UInt8] {
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
            json += ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}"
            offset += e.bytes.count
        }
        json += "}"
        var header = Array(json.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for e in ordered { out.append(contentsOf: e.bytes) }
        return out
    }

    public static func write(_ entries: [SafeTensorsEntry], to path: String) throws {
        let bytes = encode(entries)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw GradMapError.runtime("\(path): cannot write")
        }
    }
}
