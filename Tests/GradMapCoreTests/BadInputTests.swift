// Bad input: every case is a one-line error naming the file (and tensor or flag) with expected vs actual,
// thrown as .badInput (exit code 2 from the CLI), never a crash.
import Foundation
import XCTest

@testable import GradMapCore

final class BadInputTests: XCTestCase {
    /// A copy of the llama_gqa fixture to break.
    func copyFixture(_ name: String = "llama_gqa") throws -> String {
        let dir = temporaryDirectory("bad")
        for f in try FileManager.default.contentsOfDirectory(atPath: Fixtures.dir(name)) {
            try FileManager.default.copyItem(atPath: Fixtures.dir(name) + "/" + f, toPath: dir + "/" + f)
        }
        return dir
    }

    func loadModel(_ dir: String) throws {
        let ckpt = try Checkpoint(directory: dir)
        let _: Stage<Float> = try LocalEngine.load(ckpt, seqLen: 4, maxBatch: 1, training: false)
    }

    /// Writes a safetensors file whose header is `header` (raw JSON) followed by `dataBytes` zero bytes.
    func writeRaw(_ path: String, header: String, dataBytes: Int, declaredLength: UInt64? = nil) {
        var bytes = [UInt8]()
        let h = Array(header.utf8)
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: h)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: dataBytes))
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    func testMissingFiles() throws {
        expectBadInput(["/nonexistent-model", "not found"]) { try loadModel("/nonexistent-model") }
        let dir = try copyFixture()
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        expectBadInput([dir, "no model.safetensors"]) { try loadModel(dir) }
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        expectBadInput(["config.json", "not found"]) { try loadModel(dir) }
        let sharded = try copyFixture("llama_sharded_f16")
        try FileManager.default.removeItem(atPath: sharded + "/model-00002-of-00004.safetensors")
        expectBadInput(["model-00002-of-00004.safetensors", "not found"]) { try loadModel(sharded) }
    }

    func testTruncatedAndOversizedHeader() throws {
        let dir = temporaryDirectory("st")
        FileManager.default.createFile(atPath: dir + "/short.safetensors", contents: Data([1, 2, 3]))
        expectBadInput(["short.safetensors", "truncated", "3 bytes"]) { _ = try SafeTensorsFile(path: dir + "/short.safetensors") }
        writeRaw(dir + "/cut.safetensors", header: "{}", dataBytes: 0, declaredLength: 500)
        expectBadInput(["cut.safetensors", "truncated", "508"]) { _ = try SafeTensorsFile(path: dir + "/cut.safetensors") }
        writeRaw(dir + "/huge.safetensors", header: "{}", dataBytes: 0, declaredLength: 200_000_000)
        expectBadInput(["huge.safetensors", "200000000", "100000000"]) { _ = try SafeTensorsFile(path: dir + "/huge.safetensors") }
        // A real checkpoint file cut short: the data no longer covers the last tensor.
        let model = try copyFixture()
        let path = model + "/model.safetensors"
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        try full.prefix(full.count - 100).write(to: URL(fileURLWithPath: path))
        expectBadInput(["model.safetensors", "out of range"]) { try loadModel(model) }
    }

    func testOffsetsOutOfRangeOverlappingOrWithGaps() throws {
        let dir = temporaryDirectory("st")
        let a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
        writeRaw(dir + "/range.safetensors", header: "{\(a),\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", dataBytes: 12)
        expectBadInput(["range.safetensors", "tensor b", "out of range"]) { _ = try SafeTensorsFile(path: dir + "/range.safetensors") }
        writeRaw(dir + "/overlap.safetensors", header: "{\(a),\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", dataBytes: 12)
        expectBadInput(["overlap.safetensors", "tensor b", "overlaps"]) { _ = try SafeTensorsFile(path: dir + "/overlap.safetensors") }
        writeRaw(dir + "/gap.safetensors", header: "{\(a),\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", dataBytes: 20)
        expectBadInput(["gap.safetensors", "tensor b", "gap"]) { _ = try SafeTensorsFile(path: dir + "/gap.safetensors") }
        writeRaw(dir + "/tail.safetensors", header: "{\(a)}", dataBytes: 12)
        expectBadInput(["tail.safetensors", "file size", "expected"]) { _ = try SafeTensorsFile(path: dir + "/tail.safetensors") }
    }

    func testDTypeShapeDisagreeingWithByteLength() throws {
        let dir = temporaryDirectory("st")
        writeRaw(dir + "/len.safetensors", header: "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,24]}}", dataBytes: 24)
        expectBadInput(["len.safetensors", "tensor w", "needs 12 bytes", "give 24"]) { _ = try SafeTensorsFile(path: dir + "/len.safetensors") }
        writeRaw(dir + "/dtype.safetensors", header: "{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", dataBytes: 8)
        expectBadInput(["dtype.safetensors", "tensor w", "unknown dtype Q4"]) { _ = try SafeTensorsFile(path: dir + "/dtype.safetensors") }
    }

    func testMissingWrongShapedAndUnexpectedTensors() throws {
        let src = try Checkpoint(directory: Fixtures.dir("llama_gqa"))
        let (file, _) = try (src.source as! SafeTensorsFolder).info("model.norm.weight")
        func rewrite(_ edit: (inout [SafeTensorsEntry]) -> Void) throws -> String {
            var entries = file.tensors.values.map { i in
                SafeTensorsEntry(name: i.name, dtype: i.dtype, shape: i.shape,
                                 bytes: Array(UnsafeRawBufferPointer(start: file.data(i), count: i.end - i.begin)))
            }
            edit(&entries)
            let dir = try copyFixture()
            try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
            return dir
        }
        let missing = try rewrite { $0.removeAll { $0.name == "model.layers.1.mlp.up_proj.weight" } }
        expectBadInput(["missing tensor model.layers.1.mlp.up_proj.weight"]) { try loadModel(missing) }
        let wrong = try rewrite { e in
            let i = e.firstIndex { $0.name == "model.layers.0.self_attn.k_proj.weight" }!
            e[i] = SafeTensorsEntry(name: e[i].name, dtype: .f32, shape: [8, 32], bytes: [UInt8](repeating: 0, count: 8 * 32 * 4))
        }
        expectBadInput(["model.safetensors", "model.layers.0.self_attn.k_proj.weight", "expected [16, 32], got [8, 32]"]) { try loadModel(wrong) }
        let extra = try rewrite { $0.append(SafeTensorsEntry(name: "model.layers.2.mlp.up_proj.weight", dtype: .f32, shape: [1], bytes: [0, 0, 0, 0])) }
        expectBadInput(["unexpected tensor model.layers.2.mlp.up_proj.weight"]) { try loadModel(extra) }
        // The writer's own output reads back identically (alignment, order, metadata).
        let same = try rewrite { _ in }
        let reread = try SafeTensorsFile(path: same + "/model.safetensors")
        XCTAssertEqual(reread.metadata["format"], "pt")
        for (name, info) in file.tensors {
            let j = reread.tensors[name]!
            XCTAssertEqual(j.begin % 8, 0, "\(name) not 8-byte aligned")
            XCTAssertEqual(memcmp(reread.data(j), file.data(info), info.end - info.begin), 0, name)
        }
    }

    func testUnsupportedModelTypeAndRope() throws {
        let dir = try copyFixture()
        let path = dir + "/config.json"
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        func save() throws { try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: path)) }
        cfg["model_type"] = "gpt2"
        try save()
        expectBadInput(["config.json", "model_type 'gpt2' is not supported", "llama, mistral, qwen2"]) { try loadModel(dir) }
        cfg["model_type"] = "llama"
        cfg["rope_scaling"] = ["rope_type": "yarn", "factor": 4.0]
        try save()
        expectBadInput(["config.json", "rope_type 'yarn' is not supported"]) { try loadModel(dir) }
        cfg.removeValue(forKey: "rope_scaling")
        cfg["rope_parameters"] = ["rope_type": "dynamic", "rope_theta": 10000.0]
        try save()
        expectBadInput(["config.json", "rope_parameters", "'dynamic'"]) { try loadModel(dir) }
        cfg["rope_parameters"] = ["rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0]
        try save()
        expectBadInput(["config.json", "needs low_freq_factor"]) { try loadModel(dir) }
        cfg.removeValue(forKey: "rope_parameters")
        cfg.removeValue(forKey: "hidden_size")
        try save()
        expectBadInput(["config.json", "missing hidden_size"]) { try loadModel(dir) }
    }

    func testBadTokenFiles() throws {
        let dir = temporaryDirectory("tok")
        func write(_ name: String, _ ids: [UInt32], extra: [UInt8] = []) -> String {
            var d = Data()
            for id in ids { withUnsafeBytes(of: id.littleEndian) { d.append(contentsOf: $0) } }
            d.append(contentsOf: extra)
            FileManager.default.createFile(atPath: dir + "/" + name, contents: d)
            return dir + "/" + name
        }
        let odd = write("odd.bin", [1, 2, 3], extra: [7])
        expectBadInput(["odd.bin", "13 bytes", "multiple of 4"]) { _ = try TokenWindows(path: odd, seqLen: 2, vocabSize: 96) }
        let short = write("short.bin", [1, 2, 3])
        expectBadInput(["short.bin", "3 tokens", "--seq-len 16"]) { _ = try TokenWindows(path: short, seqLen: 16, vocabSize: 96) }
        let big = write("big.bin", [1, 2, 96, 4])
        expectBadInput(["big.bin", "token id 96", "position 2", "vocab_size 96"]) { _ = try TokenWindows(path: big, seqLen: 2, vocabSize: 96) }
        expectBadInput(["missing.bin", "not found"]) { _ = try TokenWindows(path: dir + "/missing.bin", seqLen: 2, vocabSize: 96) }
    }
}
