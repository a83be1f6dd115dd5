// `prune --resume`: a job killed (SIGKILL, as a node failure or preemption does) after decision 2 of 4
// continues from its journal and writes the same checkpoint, byte for byte, as a run never interrupted; a
// journal made by another job is refused with the reason.
import Foundation
import XCTest

@testable import GradMapFormats

final class ResumeTests: XCTestCase {
    /// Starts the release binary, reads its stderr line by line, and SIGKILLs it once a line contains `marker`.
    /// Returns stderr up to then.
    func killAfter(_ marker: String, _ args: [String], timeout: Double = 600) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: releaseBinaryPath)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
            .merging(["GRADMAP_BLAS_THREADS": "1"]) { _, b in b }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var seen = Data()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }  // the process ended without the marker
            seen.append(chunk)
            if String(decoding: seen, as: UTF8.self).contains(marker) {
                kill(p.processIdentifier, SIGKILL)
                break
            }
        }
        p.waitUntilExit()
        let text = String(decoding: seen, as: UTF8.self)
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "not killed: \(text)")
        return text
    }

    func testKilledJobResumesToTheSameCheckpoint() throws {
        try requireReleaseBinary()
        let tokens = try calibrationTokens()
        let dir = temporaryDirectory("resume")
        func args(_ out: String, _ extra: [String] = []) -> [String] {
            ["prune", "--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "4",
             "--validation-windows", "2", "--metric", "fisher", "--remove", "4", "--out", out, "--json"] + extra
        }
        let env = ["GRADMAP_BLAS_THREADS": "1"]
        let reference = try runProcess(releaseBinaryPath, args(dir + "/reference"), env: env, timeout: 900)
        XCTAssertEqual(reference.status, 0, reference.stderr)

        // Killed once decision 2 is journaled (the progress line follows the journal's sync).
        let out = dir + "/resumed"
        let partial = PartialFolder(out)
        let log = try killAfter("decision 2/4", args(out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no checkpoint from a killed job")
        let journal = try String(contentsOfFile: partial.journal, encoding: .utf8)
        XCTAssertEqual(journal.split(separator: "\n").count, 3, "header + decisions 1 and 2:\n\(journal)\n\(log)")

        // Another job's journal is refused, naming what differs; the journal stays for the right job.
        let other = try runProcess(releaseBinaryPath, args(out, ["--resume", "--metric", "taylor"]), env: env, timeout: 900)
        XCTAssertEqual(other.status, 2, other.stderr)
        XCTAssertTrue(other.stderr.contains("--resume: \(partial.journal) was made with other options"), other.stderr)
        XCTAssertTrue(other.stderr.contains("metric=fisher"), other.stderr)
        XCTAssertEqual(other.stderr.split(separator: "\n").count, 1, other.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: partial.journal))

        let resumed = try runProcess(releaseBinaryPath, args(out, ["--resume"]), env: env, timeout: 900)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("decision 2/4: removed layer") && resumed.stderr.contains("from the journal"), resumed.stderr)
        XCTAssertFalse(resumed.stderr.contains("decision 1/4: removed layer") && !resumed.stderr.contains("from the journal"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial.path), "partial folder renamed")

        // Every file but the report (which holds timings) byte-identical; the report's decisions the same.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/reference").sorted()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), files)
        for name in files where !name.hasPrefix("pruning_report") {
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/reference/" + name))
            let b = try Data(contentsOf: URL(fileURLWithPath: out + "/" + name))
            XCTAssertTrue(a == b, "\(name) differs")
        }
        func report(_ folder: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/pruning_report.json"))) as! [String: Any]
        }
        let (r, s) = (try report(dir + "/reference"), try report(out))
        XCTAssertEqual(r["removed"] as? [Int], s["removed"] as? [Int])
        XCTAssertEqual((r["scores"] as! [[Any]]).description, (s["scores"] as! [[Any]]).description, "scores replayed exactly")

        // With no journal, --resume has nothing to continue: exit 2 naming the flag.
        let none = try runProcess(releaseBinaryPath, args(dir + "/none", ["--resume"]), env: env)
        XCTAssertEqual(none.status, 2, none.stderr)
        XCTAssertTrue(none.stderr.contains("--resume: no journal at"), none.stderr)
    }
}
