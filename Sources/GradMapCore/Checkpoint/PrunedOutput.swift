// Where `prune --out` writes, decided here only: a name ending in .gguf is a GGUF file written from the source
// GGUF (PrunedGGUFWriter), anything else a Hugging Face folder (PrunedWriter).
import Foundation

public enum PrunedOutput: Sendable {
    case folder(String)
    case gguf(String)

    public init(_ out: String) { self = out.lowercased().hasSuffix(".gguf") ? .gguf(out) : .folder(out) }

    public var path: String {
        switch self {
        case .folder(let p), .gguf(let p): return p
        }
    }

    /// Refuses, before any work: a GGUF out from a source that is not a GGUF (or whose ffn_down cannot be written
    /// back as asked), a storage given for a folder, an --out of the other kind (file/folder), an existing one
    /// without --force, a missing parent; and removes a partial an earlier, SIGKILLed run left.
    public func check(force: Bool, source: Checkpoint, down: GGUFDownStorage?, compensating: Bool) throws {
        let out = path
        var isDir: ObjCBool = false
        switch self {
        case .gguf:
            guard let gguf = source.gguf else {
                throw bad("out", out, "writes a GGUF, which needs a GGUF --model; \(source.path) is a Hugging Face folder (give a folder --out)")
            }
            try PrunedGGUFWriter.checkSource(gguf, down: down ?? .f16, compensating: compensating)
        case .folder:
            if let down { throw bad("ggufDown", down.rawValue, "applies to a .gguf --out only; \(out) is a folder") }
        }
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
            switch self {
            case .folder: guard isDir.boolValue else { throw bad("out", out, "is a file; expected a folder to create") }
            case .gguf: guard !isDir.boolValue else { throw bad("out", out, "is a folder; expected a .gguf file to create") }
            }
            guard force else { throw bad("out", out, "already exists; replaced only when forced") }
        }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw bad("out", out, "parent folder \(parent) does not exist")
        }
        try PartialFolder(out).removeStale()
    }

    /// What the compensation rounds its folded values to, so that the model in memory is the one written:
    /// the folder's dtype, or F16 for a GGUF's F16 ffn_down (a re-quantised one is rounded when written).
    public func storage(folder dtype: DType, down: GGUFDownStorage) -> DType {
        switch self {
        case .folder: return dtype
        case .gguf: return down == .f16 ? .f16 : .f32
        }
    }

    /// Writes the pruned model (all ranks call it). `extraFiles` go into a folder; a GGUF has no room for them.
    public func write(
        pipeline: Pipeline<Float>, source: Checkpoint, kept: Set<Int>, dtype: DType, compensated: Int?,
        down: GGUFDownStorage, force: Bool, extraFiles: [String: Data]
    ) throws {
        switch self {
        case .folder(let out):
            try PrunedWriter(pipeline: pipeline, source: source, kept: kept, dtype: dtype).write(to: out, force: force, extraFiles: extraFiles)
        case .gguf(let out):
            try PrunedGGUFWriter(pipeline: pipeline, source: source.gguf!, kept: kept, compensated: compensated, down: down)
                .write(to: out, force: force)
        }
    }
}
