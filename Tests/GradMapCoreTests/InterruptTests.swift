// No `.partial` folder outlives a prune: SIGTERM or SIGINT while the writer builds it removes it (alone and
// under mpirun, where a SIGKILLed rank makes mpirun SIGTERM the others), and a stale one that a SIGKILLed
// writer left is removed when the next prune to the same --out starts.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapSupport

final class InterruptTests: XCTestCase {
    /// A copy of the llama_gqa fixture whose generation_config.json is a FIFO: the writer, copying it, blocks
    /// in read() with the shard, index and config already in the partial folder, until the test signals it.
    func blockingModel() throws -> String {
        let dir = temporaryDirectory("fifo-model")
        for name in ["config.json", "model.safetensors", "tokens.bin"] {
            try FileManager.default.copyItem(atPath: Fixtures.dir("llama_gqa") + "/" + name, toPath: dir + "/" + name)
        }
        XCTAssertEqual(mkfifo(dir + "/generation_config.json", 0o600), 0)
        return dir
    }

    func pruneArgs(_ model: String, _ out: String) -> [String] {
        ["prune", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16", "--calib-windows", "2",
         "--layers", "1", "--protect-first", "0", "--no-compensate", "--out", out]
    }

    /// Waits until the writer has put config.json into the partial folder (it then blocks on the FIFO).
    func waitForPartial(_ partial: String, _ run: RunningProcess) throws {
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: partial + "/config.json") {
            guard run.process.isRunning, Date() < deadline else {
                let r = try run.finish(timeout: 5)
                throw GradMapError.runtime("no \(partial) appeared: status \(r.status), \(r.stderr)")
            }
            usleep(20_000)
        }
    }

    func testSignalWhileWritingRemovesThePartialFolder() throws {
        let mpi = FileManager.default.isExecutableFile(atPath: DistributedTests.mpirun)
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "2"]
        // (how, ranks): signal the process itself, or mpirun, or SIGKILL the rank not blocked on the FIFO.
        let cases: [(String, Int)] = [("SIGTERM", 1), ("SIGINT", 1)] + (mpi ? [("SIGTERM", 2), ("SIGKILL rank 1", 2)] : [])
        for (how, np) in cases {
            let model = try blockingModel()
            let out = temporaryDirectory("interrupt") + "/pruned"
            let partial = PartialFolder.path(for: out)
            let run = np == 1
                ? try RunningProcess(binaryPath, pruneArgs(model, out))
                : try RunningProcess(DistributedTests.mpirun, flags + [binaryPath] + pruneArgs(model, out), env: ["GRADMAP_BLAS_THREADS": "1"])
            try waitForPartial(partial, run)
            if how == "SIGKILL rank 1" {
                // mpirun's children are the ranks; rank 1 is the one whose environment says so.
                let ranks = try runProcess("/usr/bin/pgrep", ["-P", "\(run.pid)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
                let one = try XCTUnwrap(ranks.first { pid in
                    let env = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
                    return env.split(separator: 0).contains(Data("OMPI_COMM_WORLD_RANK=1".utf8))
                }, "no rank 1 among \(ranks)")
                kill(one, SIGKILL)
            } else {
                kill(run.pid, how == "SIGINT" ? SIGINT : SIGTERM)
            }
            let r = try run.finish(timeout: 60)
            XCTAssertNotEqual(r.status, 0, "\(how) np=\(np): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("stopped by SIG"), "\(how) np=\(np): no line saying why: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("removed \(partial)"), "\(how) np=\(np): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: partial), "\(how) np=\(np): \(partial) left")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(how) np=\(np): \(out) written")
        }
    }

    func testStalePartialFolderIsRemovedWhenAPruneStarts() throws {
        let model = Fixtures.dir("llama_gqa")
        let out = temporaryDirectory("stale") + "/pruned"
        let partial = PartialFolder.path(for: out)
        // What a SIGKILLed writer leaves: a half-written shard, no index.
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false)
        XCTAssertTrue(FileManager.default.createFile(atPath: partial + "/model-00001-of-00001.safetensors", contents: Data(count: 100)))
        // A prune that stops with bad input after the checks still removes it: it was stale before any work.
        let bad = try runProcess(binaryPath, pruneArgs(model, out) + ["--eval-tokens", "/nonexistent/eval.bin"])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial), "stale \(partial) kept by a failed prune")
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false)
        XCTAssertTrue(FileManager.default.createFile(atPath: partial + "/junk", contents: Data(count: 10)))
        let r = try runProcess(binaryPath, pruneArgs(model, out))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial), "stale \(partial) left")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        XCTAssertFalse(files.contains("junk"), "the stale folder's files went into --out: \(files)")
        XCTAssertTrue(files.isSuperset(of: ["config.json", "model.safetensors.index.json", "pruning_report.json"]), "\(files)")
    }
}
