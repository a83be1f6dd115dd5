// Where `prune --out` writes, decided here only: a name ending in .gguf is a GGUF file written from the source
// GGUF (PrunedGGUFWriter), anything else a Hugging Face folder (PrunedWriter). Also where the job's decision
// journal lives: in the folder's `.DIR.partial`, or beside a GGUF's partial file as `.NAME.gguf.decisions.jsonl`.
import Foundation
import GradMapDistributed
import GradMapFormats
import GradMapRuntime
import GradMapSupport

public enum PrunedOutput: Sendable {
    case folder(String)
    case gguf(String)

    public init(_ out: String) { self = out.lowercased().hasSuffix(".gguf") ? .gguf(out) : .folder(out) }

    public var path: String {
        switch self {
        case .folder(let p), .gguf(let p): return p
        }
    }

    public var partial: PartialFolder { PartialFolder(path) }

    /// The decision journal's file (DecisionJournal).
    public var journal: String {
        switch self {
        case .folder: return partial.journal
        case .gguf: return partial.path.replacingOccurrences(of: ".partial", with: ".decisions.jsonl", options: .backwards)
        }
    }

    /// Makes the place the journal goes into (the partial folder; a GGUF's journal needs none).
    package func prepareJournal() throws {
        guard case .folder = self else { return }
        try namingFile(partial.path, "cannot create") {
            try FileManager.default.createDirectory(atPath: partial.path, withIntermediateDirectories: false)
        }
    }

    /// Refuses, before any work: a GGUF out from a source that is not a GGUF (or whose ffn_down cannot be written
    /// back as asked), a GGUF storage given for a folder, an out of the other kind (file/folder), an existing one
    /// without `force`, a missing parent; and removes a partial an earlier, SIGKILLed run left, its journal too
    /// unless the job resumes from it. Whether a journal was removed.
    @discardableResult
    public func check(force: Bool, source: Checkpoint, down: GGUFDownStorage?, compensating: Bool, keepJournal: Bool = false) throws -> Bool {
        let out = path
        var isDir: ObjCBool = false
        switch self {
        case .gguf:
            guard let gguf = source.gguf else {
                throw bad(.out, out, "writes a GGUF, which needs a GGUF model; \(source.path) is a Hugging Face folder (give a folder to write)")
            }
            try PrunedGGUFWriter.checkSource(gguf, down: down ?? .f16, compensating: compensating)
        case .folder:
            if let down { throw bad(.ggufDown, down.rawValue, "applies to a .gguf output only; \(out) is a folder") }
        }
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
            switch self {
            case .folder: guard isDir.boolValue else { throw bad(.out, out, "is a file; expected a folder to create") }
            case .gguf: guard !isDir.boolValue else { throw bad(.out, out, "is a folder; expected a .gguf file to create") }
            }
            guard force else { throw bad(.out, out, "already exists; replaced only when forced") }
        }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw bad(.out, out, "parent folder \(parent) does not exist")
        }
        let hadJournal = FileManager.default.fileExists(atPath: journal)
        switch self {
        case .folder:
            if keepJournal { return false }
            try partial.removeStale()
        case .gguf:
            try partial.removeStale()
            if keepJournal { return false }
            try Interrupt.removeTree(journal)
        }
        return hadJournal
    }

    /// What the compensation rounds its folded values to, so that the model in memory is the one written:
    /// the folder's dtype, or F16 for a GGUF's F16 ffn_down (a re-quantised one is rounded when written).
    public func storage(folder dtype: DType, down: GGUFDownStorage) -> DType {
        switch self {
        case .folder: return dtype
        case .gguf: return down == .f16 ? .f16 : .f32
        }
    }

    /// Writes the pruned model (all ranks call it). `extraFiles` (called on rank 0 once the tensors are
    /// written) go into a folder; a GGUF has no room for them. The journal is removed once the output is in place.
    public func write(
        pipeline: Pipeline<Float>, source: Checkpoint, kept: Set<Int>, dtype: DType, compensated: Int?,
        down: GGUFDownStorage, force: Bool, extraFiles: () throws -> [String: Data]
    ) throws {
        switch self {
        case .folder(let out):
            try PrunedWriter(pipeline: pipeline, source: source, kept: kept, dtype: dtype).write(to: out, force: force, extraFiles: extraFiles)
        case .gguf(let out):
            try PrunedGGUFWriter(pipeline: pipeline, source: source.gguf!, kept: kept, compensated: compensated, down: down)
                .write(to: out, force: force)
            if pipeline.world.rank == 0 { try Interrupt.removeTree(journal) }
        }
    }
}
