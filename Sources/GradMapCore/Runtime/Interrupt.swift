// SIGTERM and SIGINT (what mpirun sends to the surviving ranks when one dies or when it is itself stopped,
// and what Ctrl-C sends): the process removes the partial output folder it was building, says why it stops
// in one line on stderr, and dies of the signal, so its parent still sees "killed by signal N".
//
// Why a handler, a pipe and a thread: the signal may land on any thread (an OpenBLAS worker, MPI's progress
// thread) while the main thread is deep in a GEMM or blocked in MPI_Wait, so nothing can wait for the main
// thread. The handler only write()s the signal number into a pipe (async-signal-safe); a thread that does
// nothing but block in read() wakes up and removes the folder with ordinary calls (FileManager allocates,
// which a handler must not). A DispatchSource signal source is no better here: on Linux libdispatch reads
// signals from a signalfd, which sees a signal only while every thread blocks it, and OpenBLAS starts its
// threads before main, so a process-directed SIGTERM would reach one of them and end the process at once.
import Foundation
import GradMapSupport

#if canImport(Glibc)
import Glibc
#endif

public enum Interrupt {
    /// Held while the writer creates, fills or renames the partial folder and by the cleanup thread once a
    /// signal came, which never releases it: the folder is removed either before it exists or after.
    private static let lock = NSLock()
    /// The folder to remove on a signal (set under `lock`).
    nonisolated(unsafe) private static var partial: String?
    /// A file in it that removal spares (with the folder): the state a crashed job resumes from.
    nonisolated(unsafe) private static var spared: String?
    /// [read, write] ends of the pipe from the handler to the cleanup thread; -1 until install().
    nonisolated(unsafe) private static var pipeEnds: [Int32] = [-1, -1]
    nonisolated(unsafe) private static var writeEnd: Int32 = -1
    /// "rank N" under MPI, else "gradmap-dist": read before any signal, as messages are prefixed elsewhere.
    nonisolated(unsafe) private static var prefix = "gradmap-dist"
    /// Set when the job ends by agreement, its failure already reported (Communicator.endJob): a SIGTERM then
    /// is mpirun stopping the ranks still in MPI_Finalize after the first exited, no news, so it adds no line.
    nonisolated(unsafe) private static var quiet = false

    /// Installs the handlers for SIGTERM and SIGINT and starts the cleanup thread (once, at start-up).
    public static func install() {
        guard writeEnd < 0 else { return }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }  // no pipe: the default action (die) still applies
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)  // a handler never blocks
        pipeEnds = ends
        writeEnd = ends[1]
        if let r = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? ProcessInfo.processInfo.environment["PMIX_RANK"] {
            prefix = "rank \(r)"
        }
        let thread = Thread { cleanUpOnSignal() }
        thread.name = "gradmap-interrupt"
        thread.start()
        for sig in [SIGTERM, SIGINT] {
            _ = signal(sig) { number in
                var n = number
                _ = withUnsafeBytes(of: &n) { write(Interrupt.writeEnd, $0.baseAddress, $0.count) }
            }
        }
    }

    /// Runs `body` with the folder to remove on a signal set to `path` (nil: none) while `body` runs under
    /// the lock; body is the step that creates or renames the folder, so a signal never lands half-way.
    public static func guarding<T>(_ path: String?, sparing file: String? = nil, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        partial = path
        spared = file
        return try body()
    }

    /// From now on a signal ends the process without a line (see `quiet`).
    public static func silence() { quiet = true }

    /// Removes a partial folder and what it holds; entries that vanish meanwhile (another rank removing the
    /// same folder) are not errors. Throws only when something stays.
    /// Removes `path` and everything under it; a folder holding `sparing` keeps that file and stays.
    public static func removeTree(_ path: String, sparing: String? = nil) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { return }
        if isDir.boolValue {
            let names = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            for name in names where name != sparing { try removeTree(path + "/" + name) }
            if let sparing, names.contains(sparing) { return }
            if rmdir(path) != 0 && errno != ENOENT {
                throw GradMapError.runtime("\(path): cannot remove (\(String(cString: strerror(errno))))")
            }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw GradMapError.runtime("\(path): cannot remove (\(String(cString: strerror(errno))))")
        }
    }

    private static func cleanUpOnSignal() {
        var number: Int32 = 0
        while withUnsafeMutableBytes(of: &number, { read(pipeEnds[0], $0.baseAddress, $0.count) }) != MemoryLayout<Int32>.size {
            if errno != EINTR { return }
        }
        lock.lock()  // never unlocked: the writer stops at its next guarded step until the process ends
        var note = ""
        if let path = partial {
            // A shard another thread is writing may land between two passes: retry until the folder is gone.
            let kept: String? = spared.map { path + "/" + $0 }.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
            func done() -> Bool {
                let left = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                return kept != nil ? left == [spared!] : !FileManager.default.fileExists(atPath: path)
            }
            for _ in 0..<5 where !done() { try? removeTree(path, sparing: spared) }
            if !done() { note = "; could not remove \(path)" }
            else if let kept { note = "; removed \(path) but its decision journal \(kept) (`prune --resume` continues the job)" }
            else { note = "; removed \(path)" }
        }
        let name = number == SIGINT ? "SIGINT" : number == SIGTERM ? "SIGTERM" : "signal \(number)"
        if !quiet || !note.isEmpty { FileHandle.standardError.write(Data("\(prefix): stopped by \(name)\(note)\n".utf8)) }
        signal(number, SIG_DFL)
        raise(number)
        _exit(128 + number)
    }
}
