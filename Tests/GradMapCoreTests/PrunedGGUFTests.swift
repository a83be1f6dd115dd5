// `prune --out FILE.gguf`: the Q4_1 quantiser against gguf-py, the written file's tensors (kept ones byte for
// byte), metadata rules and alignment, the same file from 1 rank and from 2 stages, the compensated ffn_down in
// either storage, and bad input. Fixtures: scripts/make_gguf_prune_fixtures.py.
import Foundation
import XCTest

@testable import GradMapFormats

final class PrunedGGUFTests: XCTestCase {
    let source = GGUFFixtures.dir + "/llama_prune.gguf"
    let tokens = GGUFFixtures.dir + "/llama_prune.tokens.bin"

    func testQ4_1QuantiserMatchesGGUFPyBitForBit() throws {
        let input = try Data(contentsOf: URL(fileURLWithPath: GGUFFixtures.dir + "/q4_1.input.f32"))
        let expected = try Data(contentsOf: URL(fileURLWithPath: GGUFFixtures.dir + "/q4_1.expected.bin"))
        let x = input.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let type = GGMLType.all[3]!
        XCTAssertEqual(expected.count, x.count / 32 * type.blockBytes)
        var out = Data(count: expected.count)
        out.withUnsafeMutableBytes { dst in x.withUnsafeBufferPointer { quantize($0.baseAddress!, count: x.count, type: type, into: dst.baseAddress!) } }
        for b in 0..<x.count / 32 where out[(20 * b)..<(20 * b + 20)] != expected[(20 * b)..<(20 * b + 20)] {
            XCTFail("block \(b): \(Array(out[(20 * b)..<(20 * b + 20)])) != gguf-py \(Array(expected[(20 * b)..<(20 * b + 20)]))")
        }
    }

    /// Runs prune on the fixture (layer 1 removed, compensation folded into layer 2) with np ranks = stages.
    func prune(_ out: String, down: String, np: Int = 1, extra: [String] = []) throws -> ProcessResult {
        let args = ["prune", "--model", source, "--tokens", tokens, "--seq-len", "16", "--calib-windows", "8",
                    "--layers", "1", "--compensate-at", "2", "--gguf-down", down, "--matmul", "f32", "--out", out,
                    "--stages", "\(np)", "--json"] + extra
        if np == 1 { return try runProcess(binaryPath, args) }
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "\(np)"]
        return try runProcess(DistributedTests.mpirun, flags + [binaryPath] + args, env: ["GRADMAP_BLAS_THREADS": "1"])
    }

    func bytes(_ f: GGUFFile, _ t: GGUFTensorInfo) -> Data { Data(bytes: f.data(t), count: t.byteCount) }

    func dequantized(_ f: GGUFFile, _ name: String) -> [Float] {
        let t = f.tensors[name]!
        var v = [Float](repeating: 0, count: t.count)
        dequantize(f.data(t), type: t.type, count: t.count, into: &v)
        return v
    }

    func testKeptTensorsAreCopiedAndMetadataFollowsTheRules() throws {
        let dir = temporaryDirectory("ggufout")
        let src = try GGUFFile(path: source)
        var reported = 0.0
        for down in ["f16", "source"] {
            let out = dir + "/\(down).gguf"
            let r = try prune(out, down: down)
            XCTAssertEqual(r.status, 0, r.stderr)
            if down == "f16" { reported = (try lastJSON(r)["calib_loss"] as! [String: Any])["compensated"] as! Double }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }, [], "no partial left")
            let f = try GGUFFile(path: out)
            // Tensors: blk.1.* dropped, blk.2/3 renumbered 1/2, file order kept; every one but the compensated
            // ffn_down (blk.2 → blk.1) has the source's type, dims and bytes.
            let renumber = [0: 0, 2: 1, 3: 2]
            let expectedNames = src.tensorList.compactMap { t -> String? in
                let p = t.name.split(separator: ".", maxSplits: 2)
                guard p[0] == "blk" else { return t.name }
                return renumber[Int(p[1])!].map { "blk.\($0).\(p[2])" }
            }
            XCTAssertEqual(f.tensorList.map(\.name), expectedNames)
            for t in f.tensorList where t.name != "blk.1.ffn_down.weight" {
                let p = t.name.split(separator: ".", maxSplits: 2)
                let from = p[0] == "blk" ? "blk.\(renumber.first { $0.value == Int(p[1])! }!.key).\(p[2])" : t.name
                let s = src.tensors[from]!
                XCTAssertEqual(t.type, s.type, t.name)
                XCTAssertEqual(t.dims, s.dims, t.name)
                XCTAssertEqual(bytes(f, t), bytes(src, s), "\(t.name) bytes differ from \(from)")
            }
            // Alignment: general.alignment 64 honoured for the data section and every tensor.
            XCTAssertEqual(f.alignment, 64)
            XCTAssertEqual(f.dataStart % 64, 0)
            XCTAssertTrue(f.tensorList.allSatisfy { $0.offset % 64 == 0 })
            // Metadata: same keys in the same order, block_count and the per-layer array cut, the rest equal.
            XCTAssertEqual(f.version, src.version)
            XCTAssertEqual(f.metadataKeys, src.metadataKeys)
            for key in src.metadataKeys {
                switch key {
                case "llama.block_count": XCTAssertEqual(f.metadata[key], .u32(3))
                case "llama.test.per_layer": XCTAssertEqual(f.metadata[key], .array(4, [.u32(10), .u32(12), .u32(13)]))
                default: XCTAssertEqual(f.metadata[key], src.metadata[key], key)
                }
            }
            XCTAssertEqual(f.metadata["test.per_layer_elsewhere"]?.array?.count, 4, "a length-4 array outside llama.* is kept")
            XCTAssertNotNil(f.metadata["tokenizer.ggml.merges"])
            let down16 = f.tensors["blk.1.ffn_down.weight"]!
            XCTAssertEqual(down16.type.name, down == "f16" ? "F16" : "Q4_1")
        }
        // The compensated ffn_down: folded (not the source's values), and the Q4_1 one within half a quantisation
        // step (d/2 of its block, plus the F16 rounding of the reference) of the F16 one.
        let f16 = try GGUFFile(path: dir + "/f16.gguf"), q = try GGUFFile(path: dir + "/source.gguf")
        let folded = dequantized(f16, "blk.1.ffn_down.weight"), requantized = dequantized(q, "blk.1.ffn_down.weight")
        XCTAssertGreaterThan(maxAbsDiff(folded, dequantized(src, "blk.2.ffn_down.weight")), 1e-3, "compensation changed the values")
        let t = q.tensors["blk.1.ffn_down.weight"]!
        for b in 0..<t.count / 32 {
            let d = halfToFloat(q.data(t).loadUnaligned(fromByteOffset: 20 * b, as: UInt16.self))
            for j in (32 * b)..<(32 * b + 32) {
                XCTAssertLessThanOrEqual(abs(requantized[j] - folded[j]), d / 2 * 1.001 + abs(folded[j]) * 1e-3, "element \(j)")
            }
        }
        // F16 storage: the compensation rounded its fold to F16, so the written file is the model in memory:
        // its loss on the (all 8) calibration windows equals the reported compensated loss. Same engine, same
        // values, same f32 products; only the reduction over windows may be ordered differently (1e-9 relative).
        let e = try runProcess(binaryPath, ["eval", "--model", dir + "/f16.gguf", "--tokens", tokens, "--seq-len", "16", "--matmul", "f32", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let written = try lastJSON(e)["loss"] as! Double
        XCTAssertEqual(written, reported, accuracy: 1e-9 * reported)
    }

    /// Two stages: layer 2 (compensated) lives on rank 1, which sends its ffn_down to rank 0, the writer.
    func testTwoStagesWriteTheSameFileAsOneRank() throws {
        let dir = temporaryDirectory("ggufout2")
        for down in ["f16", "source"] {
            let one = try prune(dir + "/one.gguf", down: down), two = try prune(dir + "/two.gguf", down: down, np: 2)
            XCTAssertEqual(one.status, 0, one.stderr)
            XCTAssertEqual(two.status, 0, two.stderr)
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.gguf"))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/two.gguf"))
            XCTAssertEqual(a, b, "\(down): 2 stages wrote a different file")
            try FileManager.default.removeItem(atPath: dir + "/one.gguf")
            try FileManager.default.removeItem(atPath: dir + "/two.gguf")
        }
    }

    func testBadGGUFOutIsRefusedAndNothingIsWritten() throws {
        let dir = temporaryDirectory("ggufbad")
        // A Hugging Face folder cannot be written back as a GGUF.
        let folder = Fixtures.dir("llama_gqa")
        let r = try runProcess(binaryPath, ["prune", "--model", folder, "--tokens", folder + "/tokens.bin", "--seq-len", "16",
                                            "--calib-windows", "2", "--layers", "1", "--out", dir + "/p.gguf"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--out") && r.stderr.contains("needs a GGUF model"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        // --gguf-down for a folder --out.
        let g = try runProcess(binaryPath, ["prune", "--model", source, "--tokens", tokens, "--seq-len", "16", "--calib-windows", "2",
                                            "--layers", "1", "--gguf-down", "source", "--out", dir + "/folder"])
        XCTAssertEqual(g.status, 2, g.stderr)
        XCTAssertTrue(g.stderr.contains("--gguf-down source: applies to a .gguf output only"), g.stderr)
        // --gguf-down source from a GGUF whose ffn_down it cannot re-quantise (llama_mixed: Q4_0 in layer 0).
        let mixed = GGUFFixtures.path("llama_mixed")
        let q = try runProcess(binaryPath, ["prune", "--model", mixed, "--tokens", GGUFFixtures.dir + "/llama_mixed.tokens.bin",
                                            "--seq-len", "16", "--calib-windows", "2", "--layers", "1", "--compensate-at", "0",
                                            "--gguf-down", "source", "--out", dir + "/q.gguf"])
        XCTAssertEqual(q.status, 2, q.stderr)
        XCTAssertTrue(q.stderr.contains("tensor blk.0.ffn_down.weight has ggml type Q4_0, which cannot be re-quantised"), q.stderr)
        // A folder named *.gguf, and an existing file without --force.
        try FileManager.default.createDirectory(atPath: dir + "/d.gguf", withIntermediateDirectories: false)
        let d = try prune(dir + "/d.gguf", down: "f16")
        XCTAssertEqual(d.status, 2, d.stderr)
        XCTAssertTrue(d.stderr.contains("is a folder; expected a .gguf file"), d.stderr)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/e.gguf", contents: Data("old".utf8)))
        let e = try prune(dir + "/e.gguf", down: "f16")
        XCTAssertEqual(e.status, 2, e.stderr)
        XCTAssertTrue(e.stderr.contains("already exists"), e.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/e.gguf")), Data("old".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["d.gguf", "e.gguf"], "nothing written")
        // --force replaces it; a partial file a SIGKILLed writer left is removed first.
        let stale = PartialFolder.path(for: dir + "/e.gguf")
        XCTAssertTrue(FileManager.default.createFile(atPath: stale, contents: Data(count: 100)))
        let forced = try prune(dir + "/e.gguf", down: "f16", extra: ["--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertEqual(try GGUFFile(path: dir + "/e.gguf").int("llama.block_count"), 3)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["d.gguf", "e.gguf"], "\(stale) removed")
    }
}
