// A folder (or a single file, as a pruned GGUF) written atomically, as `convert` and `prune` write checkpoints:
// built as `.NAME.partial` beside NAME and renamed into place at the end, so a failed run leaves no half-written
// NAME. Nor the partial folder or file: a failure removes it, so does SIGTERM/SIGINT (Interrupt, which this type
// tells what to remove and when), and one left by a SIGKILLed writer is removed when the next build of NAME
// starts. One file is spared by failures and signals: a pruning job's decision journal (DecisionJournal), the
// state `prune --resume` continues from; the folder stays with it alone, and it is removed before the rename.
import Foundation
import GradMapRuntime
import GradMapSupport

/// A file to put into the folder.
public enum FolderFile {
    case data(Data)
    /// A file copied as it is, read only when the folder writer reaches it.
    case copy(of: String)
}

public struct PartialFolder: Sendable {
    /// The folder being built.
    public let destination: String
    /// Where it is built: `.NAME.partial` in the same parent, so the final rename stays on one file system.
    public let path: String

    public init(_ destination: String) {
        self.destination = destination
        path = PartialFolder.path(for: destination)
    }

    public static func path(for destination: String) -> String {
        let url = URL(fileURLWithPath: destination)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial").path
    }

    /// The file that failures and signals spare: a pruning job's decision journal.
    public static let journalName = "decisions.jsonl"
    public var journal: String { path + "/" + PartialFolder.journalName }

    /// Removes a partial folder an earlier, SIGKILLed run left, journal included (every rank may: removal
    /// tolerates the others').
    public func removeStale() throws { try Interrupt.removeTree(path) }

    /// Creates the folder if it is not there, emptied but for a journal; a signal from here on removes it
    /// (sparing the journal).
    public func create(withParents: Bool = false) throws {
        try Interrupt.guarding(path, sparing: PartialFolder.journalName) {
            try Interrupt.removeTree(path, sparing: PartialFolder.journalName)
            guard !FileManager.default.fileExists(atPath: path) else { return }
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: withParents) }
            catch { throw GradMapError.runtime("\(path): cannot create (\(GradMapError.reason(error)))") }
        }
    }

    /// Creates the partial as an empty file instead (a stale one removed first) and opens it for writing; a
    /// signal from here on removes it. The caller closes the handle before `commit`.
    public func createFile() throws -> FileHandle {
        try Interrupt.guarding(path) {
            try Interrupt.removeTree(path)
            guard FileManager.default.createFile(atPath: path, contents: nil),
                  let handle = FileHandle(forWritingAtPath: path)
            else { throw GradMapError.runtime("\(path): cannot create (\(String(cString: strerror(errno))))") }
            return handle
        }
    }

    /// A process that writes into a folder another one creates removes it too if stopped from here on.
    public func watch() { Interrupt.guarding(path, sparing: PartialFolder.journalName) {} }

    /// Nothing left for this process to remove on a signal (another rank renamed the folder).
    public func unwatch() { Interrupt.guarding(nil) {} }

    public func write(_ name: String, _ file: FolderFile) throws {
        let to = path + "/" + name
        try namingFile(to) {
            switch file {
            case .data(let data): try data.write(to: URL(fileURLWithPath: to))
            case .copy(let from): try FileManager.default.copyItem(atPath: from, toPath: to)
            }
        }
    }

    /// A safetensors file streamed from its entries, one tensor produced at a time.
    public func writeTensors(_ entries: [SafeTensorsEntry], as name: String) throws {
        try SafeTensorsWriter.write(entries, to: path + "/" + name)
    }

    /// Renames the folder into place, first removing an existing destination when `replacing`. Under the lock
    /// with nothing to remove: a signal comes before the rename (the partial folder removed) or after it.
    public func commit(replacing: Bool) throws {
        try Interrupt.guarding(nil) {
            let fm = FileManager.default
            // The journal's decisions are in the report; the finished checkpoint is the same as an uninterrupted run's.
            try Interrupt.removeTree(journal)
            if replacing && fm.fileExists(atPath: destination) {
                try namingFile(destination, "cannot remove") { try fm.removeItem(atPath: destination) }
            }
            do { try fm.moveItem(atPath: path, toPath: destination) }
            catch { throw GradMapError.runtime("\(destination): cannot rename \(path) into place (\(GradMapError.reason(error)))") }
        }
    }

    /// After this process's own failure (a signal is Interrupt's): leaves no half-written folder behind.
    public func discard() { Interrupt.guarding(nil) { try? Interrupt.removeTree(path, sparing: PartialFolder.journalName) } }

    /// In one process: creates the folder, fills it, renames it into place; removed again if anything fails.
    public func build(replacing: Bool, withParents: Bool = false, _ fill: (PartialFolder) throws -> Void) throws {
        do {
            try create(withParents: withParents)
            try fill(self)
            try commit(replacing: replacing)
        } catch {
            discard()
            throw error
        }
    }
}

/// Runs a file operation on `path`; a Foundation or POSIX failure becomes a runtime error naming the file
/// (exit code 1: the machine failed, not the input).
package func namingFile<T>(_ path: String, _ what: String = "cannot write", _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as GradMapError { throw e } catch {
        throw GradMapError.runtime("\(path): \(what) (\(GradMapError.reason(error)))")
    }
}
