// safetensors: an 8-byte little-endian header length, a JSON header, then one data buffer. The reader
// validates the whole layout up front (size limits, dtype × shape = byte length, tensors contiguous with no gap
// or overlap, file size) so that later reads are plain pointer arithmetic.
import Foundation
import GradMapSupport

public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data buffer.
    public let begin: Int
    public let end: Int
    public var count: Int { shape.reduce(1, *) }
}

public final class SafeTensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    let file: MappedFile
    let dataStart: Int

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        guard file.size >= 8 else {
            throw bad("\(path): truncated safetensors file: \(file.size) bytes, expected at least 8")
        }
        let declared = UInt64(littleEndian: file.bytes.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(SafeTensorsFile.maxHeaderBytes) else {
            throw bad("\(path): safetensors header length \(declared) exceeds the limit of \(SafeTensorsFile.maxHeaderBytes) bytes")
        }
        let n = Int(declared)
        guard 8 + n <= file.size else {
            throw bad("\(path): truncated safetensors file: header needs \(8 + n) bytes, file has \(file.size)")
        }
        dataStart = 8 + n
        let headerData = Data(bytes: file.bytes + 8, count: n)
        guard let obj = try? JSONSerialization.jsonObject(with: headerData), let dict = obj as? [String: Any] else {
            throw bad("\(path): safetensors header is not a JSON object")
        }
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                if let m = value as? [String: Any] {
                    for (k, v) in m { metadata[k] = "\(v)" }
                }
                continue
            }
            guard let entry = value as? [String: Any] else { throw bad("\(path): tensor \(shown(name)): entry is not an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw bad("\(path): tensor \(shown(name)): missing dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw bad("\(path): tensor \(shown(name)): unknown dtype \(shown(dtypeName))")
            }
            // Integers only (1.5, 1e300, true or a value past Int.max are not sizes), and no size that overflows.
            guard let shapeAny = entry["shape"] as? [Any],
                let shape = Optional(shapeAny.compactMap { jsonInt($0) }), shape.count == shapeAny.count,
                shape.allSatisfy({ $0 >= 0 })
            else { throw bad("\(path): tensor \(shown(name)): shape must be a list of non-negative integers, got \(shown(entry["shape"]))") }
            var bytes = dtype.size
            for d in shape {
                let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
                guard !overflow else { throw bad("\(path): tensor \(shown(name)): \(shown(dtypeName)) \(shape) is too large to address") }
                bytes = p
            }
            guard let offs = entry["data_offsets"] as? [Any], offs.count == 2, let b = jsonInt(offs[0]), let e = jsonInt(offs[1])
            else { throw bad("\(path): tensor \(shown(name)): data_offsets must be [begin, end] integers, got \(shown(entry["data_offsets"]))") }
            guard b >= 0, e >= b else {
                throw bad("\(path): tensor \(shown(name)): data_offsets [\(b), \(e)] are not an increasing range")
            }
            guard e <= file.size - dataStart else {
                throw bad("\(path): tensor \(shown(name)): data_offsets [\(b), \(e)] out of range: data buffer has \(file.size - dataStart) bytes")
            }
            let info = TensorInfo(name: name, dtype: dtype, shape: shape, begin: b, end: e)
            guard e - b == bytes else {
                throw bad("\(path): tensor \(shown(name)): \(shown(dtypeName)) \(shape) needs \(bytes) bytes, data_offsets give \(e - b)")
            }
            tensors[name] = info
        }
        // Sorted by offset the tensors must tile the data buffer exactly.
        var cursor = 0
        for info in tensors.values.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            if info.begin > cursor {
                throw bad("\(path): tensor \(shown(info.name)): gap in the data buffer: begins at \(info.begin), previous tensor ends at \(cursor)")
            }
            if info.begin < cursor {
                throw bad("\(path): tensor \(shown(info.name)): overlaps the previous tensor: begins at \(info.begin), previous ends at \(cursor)")
            }
            cursor = info.end
        }
        guard dataStart + cursor == file.size else {
            throw bad("\(path): file size \(file.size) does not match the header: expected \(dataStart + cursor) bytes")
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Drops a tensor's pages from this process's resident set once it has been copied out (they stay in
    /// the page cache), so peak memory is the float32 copy, not the copy plus the mapped file.
    public func release(_ info: TensorInfo) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (dataStart + info.begin + page - 1) / page * page
        let hi = (dataStart + info.end) / page * page
        guard hi > lo else { return }
        madvise(UnsafeMutableRawPointer(mutating: file.bytes + lo), hi - lo, Int32(MADV_DONTNEED))
    }

    var dataStartForTests: Int { dataStart }

    /// Raw bytes of a tensor inside the mapping.
    public func data(_ info: TensorInfo) -> UnsafeRawPointer { file.bytes + dataStart + info.begin }
}
