// Shared test helpers: fixture locations, reference tensors, tolerances, the built binary.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapSupport

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static let names = [
        "llama_gqa", "qwen2_tied", "mistral_headdim", "llama3_rope", "llama_linear_bias", "llama_bf16",
        "llama_sharded_f16",
    ]
    static func dir(_ name: String) -> String { root + "/" + name }

    struct Reference {
        let windows: Int
        let seqLen: Int
        let loss: Double
        let file: SafeTensorsFile

        func tensor(_ name: String) -> [Float] {
            let info = file.tensors[name]!
            var out = [Float](repeating: 0, count: info.count)
            out.withUnsafeMutableBufferPointer { widen(file.data(info), dtype: info.dtype, count: info.count, into: $0.baseAddress!) }
            return out
        }
    }

    static func reference(_ name: String) throws -> Reference {
        let d = dir(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/reference.json"))) as! [String: Any]
        return Reference(
            windows: json["windows"] as! Int, seqLen: json["seq_len"] as! Int, loss: (json["loss"] as! NSNumber).doubleValue,
            file: try SafeTensorsFile(path: d + "/reference.safetensors"))
    }
}

/// max |a - b| / max |b| (0 when both are zero).
func relativeError(_ a: UnsafeBufferPointer<Float>, _ b: [Float]) -> Double {
    var diff = 0.0, scale = 0.0
    for i in 0..<b.count {
        diff = max(diff, abs(Double(a[i]) - Double(b[i])))
        scale = max(scale, abs(Double(b[i])))
    }
    return scale == 0 ? diff : diff / scale
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { max($0, abs(Double($1.0) - Double($1.1))) }
}

/// The JSON object on the last stdout line of a command run with --json.
func lastJSON(_ r: ProcessResult) throws -> [String: Any] {
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw GradMapError.runtime("no JSON: \(r.stdout) \(r.stderr)")
        }
        return o
}

func temporaryDirectory(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "gradmap-test-\(tag)-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The gradmap-dist binary built next to the test bundle.
var binaryPath: String {
    var url = Bundle.main.bundleURL
    if url.pathExtension == "xctest" { url = url.deletingLastPathComponent() }
    return url.appendingPathComponent("gradmap-dist").path
}

struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a command with OMPI_/PMIX_ variables stripped (a parent under mpirun must not leak them).
func runProcess(_ path: String, _ args: [String], env extra: [String: String] = [:], timeout: Double = 120) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
    for (k, v) in extra { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes concurrently so a chatty child never blocks.
    nonisolated(unsafe) var outData = Data(), errData = Data()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    if group.wait(timeout: .now() + timeout) == .timedOut {
        p.terminate()
        throw GradMapError.runtime("\(path) \(args.joined(separator: " ")): timed out after \(timeout) s")
    }
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs body and requires a one-line bad-input error (.badInput or .badValue) containing every string of `contains`.
func expectBadInput(_ contains: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error containing \(contains)", file: file, line: line)
    } catch let e as GradMapError {
        guard e.exitCode == 2 else { return XCTFail("not bad input: \(e)", file: file, line: line) }
        let message = e.description
        XCTAssertFalse(message.contains("\n"), "error must be one line: \(message)", file: file, line: line)
        for s in contains { XCTAssertTrue(message.contains(s), "'\(message)' lacks '\(s)'", file: file, line: line) }
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
}

/// A command started like runProcess but not waited for, so a test can signal it while it runs.
final class RunningProcess: @unchecked Sendable {
    let process = Process()
    private let out = Pipe(), err = Pipe()
    private let group = DispatchGroup()
    private var outData = Data(), errData = Data()

    init(_ path: String, _ args: [String], env extra: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        for (k, v) in extra { env[k] = v }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        try process.run()
        DispatchQueue.global().async(group: group) { self.outData = self.out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { self.errData = self.err.fileHandleForReading.readDataToEndOfFile() }
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits for the end; a run still going after `timeout` seconds is killed and reported as an error.
    func finish(timeout: Double = 120) throws -> ProcessResult {
        if group.wait(timeout: .now() + timeout) == .timedOut {
            kill(pid, SIGKILL)
            throw GradMapError.runtime("\(process.executableURL!.path): still running after \(timeout) s")
        }
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }
}
