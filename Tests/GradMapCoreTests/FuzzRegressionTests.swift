// The fuzzer's findings stay fixed: every input under Tests/Fuzz/regressions is replayed through gradmap-fuzz's own
// classification (the parser calls the CLI makes, in the harness's process, so a regression that crashes again
// fails this test instead of killing the test runner), and the built CLI gets one malformed input per format.
import Foundation
import XCTest


final class FuzzRegressionTests: XCTestCase {
    static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz").path

    var fuzzBinary: String { (binaryPath as NSString).deletingLastPathComponent + "/gradmap-fuzz" }

    /// Each regression file: success or one-line bad input naming the file. The harness's --time-limit is a
    /// wall-clock bound, so the tests give it 30 s: a hang (an input that never finishes) is still a finding,
    /// while a parse that the shared machine slows from milliseconds to a second is not (no timed assertions).
    func testEveryRegressionInputReplays() throws {
        let root = FuzzRegressionTests.fuzzRoot + "/regressions"
        let files = (FileManager.default.subpaths(atPath: root) ?? []).filter { path in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDir) && !isDir.boolValue
        }
        XCTAssertGreaterThanOrEqual(files.count, 8, "regression inputs under \(root)")
        let r = try runProcess(fuzzBinary, [
            "--replay", root, "--corpus", FuzzRegressionTests.fuzzRoot + "/corpus", "--out", temporaryDirectory("replay"),
            "--time-limit", "30",
        ])
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("replay ") }
        XCTAssertEqual(lines.count, files.count, r.stdout + r.stderr)
        for line in lines {
            // replay <format> <file> <ms> ms: ok | bad input: <message> | FINDING: <what>
            XCTAssertFalse(line.contains(" ms: FINDING"), String(line))
        }
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("replayed \(files.count) inputs, 0 findings"), r.stdout)
    }

    /// The seed corpus parses: every seed is valid input (the loop starts from each one unmutated).
    func testShortFuzzRunOverTheCorpus() throws {
        let r = try runProcess(fuzzBinary, [
            "--format", "all", "--runs", "30", "--seed", "5", "--corpus", FuzzRegressionTests.fuzzRoot + "/corpus",
            "--out", temporaryDirectory("fuzz"), "--regressions", temporaryDirectory("fuzz-regressions"),
            "--time-limit", "30",  // a hang is a finding, a slow machine is not (see above)
        ])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("0 findings"), r.stdout)
    }

    /// The CLI on one malformed input per format: exit 2, exactly one line on stderr naming the file.
    func testCLIRejectsMalformedInputOfEveryFormat() throws {
        let dir = temporaryDirectory("cli-bad")
        let fm = FileManager.default
        let corpus = FuzzRegressionTests.fuzzRoot + "/corpus"
        func folder(_ name: String, from src: String) throws -> String {
            let d = dir + "/" + name
            try fm.copyItem(atPath: src, toPath: d)
            return d
        }
        // safetensors: the header length with its top bit set (it used to trap converting to Int).
        let st = dir + "/st"
        try fm.createDirectory(atPath: st, withIntermediateDirectories: true)
        try fm.copyItem(atPath: corpus + "/safetensors/config.json", toPath: st + "/config.json")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: corpus + "/safetensors/tiny_f32.safetensors")))
        for k in 0..<8 { bytes[k] = 0xff }
        XCTAssertTrue(fm.createFile(atPath: st + "/model.safetensors", contents: Data(bytes)))
        // index: not JSON.
        let index = try folder("index", from: corpus + "/index/tiny_3_shards")
        try "{\"weight_map\": ".write(toFile: index + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        // GGUF: llama.block_count 2^24 + 2 (it used to hang building 16M layers).
        let gguf = FuzzRegressionTests.fuzzRoot + "/regressions/gguf/llama_tied_v2-a1e6b84b4c14.gguf"
        // config.json: num_hidden_layers 2^63 - 1 (it used to trap).
        let config = FuzzRegressionTests.fuzzRoot + "/regressions/config/tiny_llama-abd619fb1e65.json"
        // tokenizer.json: a vocabulary id of 252000000 (it used to allocate a table that long).
        let tokenizer = FuzzRegressionTests.fuzzRoot + "/regressions/tokenizer/gpt2_prefix_space-6c8ae3832a8a.json"
        let text = dir + "/text.txt"
        try "hello world".write(toFile: text, atomically: true, encoding: .utf8)
        // token file: 13 bytes.
        let tokens = dir + "/tokens.bin"
        XCTAssertTrue(fm.createFile(atPath: tokens, contents: Data([UInt8](repeating: 1, count: 13))))
        let model = Fixtures.dir("llama_gqa")

        let cases: [([String], String)] = [
            (["inspect", "--model", st], st + "/model.safetensors"),
            (["inspect", "--model", index], index + "/model.safetensors.index.json"),
            (["inspect", "--model", gguf], gguf),
            (["convert", "--model", gguf, "--out", dir + "/converted"], gguf),
            (["inspect", "--model", config], config),
            (["tokenize", "--model", tokenizer, "--text", text], tokenizer),
            (["eval", "--model", model, "--tokens", tokens, "--seq-len", "8"], tokens),
        ]
        for (args, file) in cases {
            let start = DispatchTime.now().uptimeNanoseconds
            let r = try runProcess(binaryPath, args, timeout: 60)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(file), "\(args): '\(r.stderr)' does not name \(file)")
            // Each parse takes milliseconds; the run is mostly process start (and MPI's for eval). Printed, not
            // asserted: the machine is shared (the 60 s timeout above catches a hang).
            print(String(format: "%@: exit %d in %.2f s", args.prefix(1).joined(), r.status, seconds))
        }
        XCTAssertFalse(fm.fileExists(atPath: dir + "/converted"), "convert left an output behind")
    }
}
