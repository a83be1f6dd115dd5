// Bad input: every case is a one-line error naming the file (and tensor, or the parameter) with expected vs
// actual, thrown as .badInput or .badValue (exit code 2 from the CLI), never a crash. 79 distinct cases (one
// expectBadInput or expect each): safetensors 24, sharded index 8, config.json 18, GGUF 12, tokenizer.json 6,
// token files 5, missing files 4, missing tensor in a single file and in a GGUF 2.
import Foundation
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapTokenizer

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
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
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
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/short.safetensors", contents: Data([1, 2, 3])))
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
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + name, contents: d))
            return dir + "/" + name
        }
        let odd = write("odd.bin", [1, 2, 3], extra: [7])
        expectBadInput(["odd.bin", "13 bytes", "multiple of 4"]) { _ = try TokenWindows(path: odd, seqLen: 2, vocabSize: 96) }
        let short = write("short.bin", [1, 2, 3])
        // The engine names its parameter (seqLen), not a flag: the CLI maps it to --seq-len (CLITests).
        expectBadInput(["short.bin", "3 tokens", "seqLen 16"]) { _ = try TokenWindows(path: short, seqLen: 16, vocabSize: 96) }
        let big = write("big.bin", [1, 2, 96, 4])
        expectBadInput(["big.bin", "token id 96", "position 2", "vocab_size 96"]) { _ = try TokenWindows(path: big, seqLen: 2, vocabSize: 96) }
        expectBadInput(["missing.bin", "not found"]) { _ = try TokenWindows(path: dir + "/missing.bin", seqLen: 2, vocabSize: 96) }
    }

    func testEmptyTokenFile() throws {
        let path = temporaryDirectory("tok") + "/empty.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        expectBadInput(["empty.bin", "0 tokens", "shorter than one window"]) { _ = try TokenWindows(path: path, seqLen: 8, vocabSize: 96) }
    }

    // MARK: - safetensors header

    func testHeaderNotJSONAndHeaderLengthPastInt() throws {
        let dir = temporaryDirectory("st")
        writeRaw(dir + "/text.safetensors", header: "not json at all", dataBytes: 0)
        expectBadInput(["text.safetensors", "header is not a JSON object"]) { _ = try SafeTensorsFile(path: dir + "/text.safetensors") }
        writeRaw(dir + "/list.safetensors", header: "[1, 2]", dataBytes: 0)
        expectBadInput(["list.safetensors", "header is not a JSON object"]) { _ = try SafeTensorsFile(path: dir + "/list.safetensors") }
        // A length with the top bit set used to trap converting to Int.
        writeRaw(dir + "/top.safetensors", header: "{}", dataBytes: 0, declaredLength: UInt64.max)
        expectBadInput(["top.safetensors", "18446744073709551615", "exceeds the limit"]) { _ = try SafeTensorsFile(path: dir + "/top.safetensors") }
    }

    func testShapesAndOffsetsThatAreNotSizes() throws {
        let dir = temporaryDirectory("st")
        func tensor(_ file: String, shape: String, offsets: String, dtype: String = "F32", data: Int = 8) -> String {
            writeRaw(dir + "/" + file, header: "{\"w\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}", dataBytes: data)
            return dir + "/" + file
        }
        let negative = tensor("negative.safetensors", shape: "[-2]", offsets: "[0,8]")
        expectBadInput(["negative.safetensors", "tensor w", "non-negative integers", "[-2]"]) { _ = try SafeTensorsFile(path: negative) }
        let fraction = tensor("fraction.safetensors", shape: "[1.5]", offsets: "[0,8]")
        expectBadInput(["fraction.safetensors", "tensor w", "non-negative integers"]) { _ = try SafeTensorsFile(path: fraction) }
        let overflow = tensor("overflow.safetensors", shape: "[4294967296,4294967296]", offsets: "[0,8]")
        expectBadInput(["overflow.safetensors", "tensor w", "too large to address"]) { _ = try SafeTensorsFile(path: overflow) }
        let reversed = tensor("reversed.safetensors", shape: "[2]", offsets: "[8,0]")
        expectBadInput(["reversed.safetensors", "tensor w", "[8, 0]", "not an increasing range"]) { _ = try SafeTensorsFile(path: reversed) }
        let huge = tensor("hugeoffset.safetensors", shape: "[2]", offsets: "[0,9223372036854775807]")
        expectBadInput(["hugeoffset.safetensors", "tensor w", "out of range", "data buffer has 8 bytes"]) { _ = try SafeTensorsFile(path: huge) }
        let one = tensor("oneoffset.safetensors", shape: "[2]", offsets: "[0]")
        expectBadInput(["oneoffset.safetensors", "tensor w", "data_offsets must be [begin, end]"]) { _ = try SafeTensorsFile(path: one) }
        let missing = tensor("nodtype.safetensors", shape: "[2]", offsets: "[0,8]", dtype: "\\n")
        expectBadInput(["nodtype.safetensors", "tensor w", "unknown dtype \\n"]) { _ = try SafeTensorsFile(path: missing) }
        // A tensor name with a newline in it is shown escaped: the message stays one line.
        writeRaw(dir + "/newline.safetensors", header: "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", dataBytes: 4)
        expectBadInput(["newline.safetensors", "tensor a\\nb", "needs 8 bytes"]) { _ = try SafeTensorsFile(path: dir + "/newline.safetensors") }
    }

    // MARK: - Sharded index and missing tensors

    func testShardedIndex() throws {
        let dir = try copyFixture("llama_sharded_f16")
        let index = dir + "/model.safetensors.index.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: index))
        var obj = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        func save(_ o: Any) throws { try JSONSerialization.data(withJSONObject: o).write(to: URL(fileURLWithPath: index)) }
        try save(["metadata": ["total_size": 1]])
        expectBadInput(["model.safetensors.index.json", "weight_map"]) { try loadModel(dir) }
        try "{ weight_map".write(toFile: index, atomically: true, encoding: .utf8)
        expectBadInput(["model.safetensors.index.json", "expected a JSON object with a weight_map"]) { try loadModel(dir) }
        var map = obj["weight_map"] as! [String: Any]
        map["model.norm.weight"] = "../model.safetensors"
        obj["weight_map"] = map
        try save(obj)
        expectBadInput(["model.safetensors.index.json", "weight_map[model.norm.weight] must be a file name"]) { try loadModel(dir) }
        // A shard name with a newline (found by the fuzzer): refused where it is read, so no message splits.
        map["model.norm.weight"] = "model-00003-of-00004.safet\nsors"
        obj["weight_map"] = map
        try save(obj)
        expectBadInput(["model.safetensors.index.json", "must be a file name", "safet\\nsors"]) { try loadModel(dir) }
        // The index names a shard that is not there: the message names the shard and the index.
        map["model.norm.weight"] = "model-00009-of-00004.safetensors"
        obj["weight_map"] = map
        try save(obj)
        expectBadInput(["model-00009-of-00004.safetensors", "file not found", "model.safetensors.index.json", "model.norm.weight"]) {
            try loadModel(dir)
        }
        // A tensor mapped to a shard that lacks it: the shard and the index are named.
        map["model.norm.weight"] = "model-00001-of-00004.safetensors"
        obj["weight_map"] = map
        try save(obj)
        expectBadInput(["model-00001-of-00004.safetensors: missing tensor model.norm.weight", "model.safetensors.index.json"]) {
            try loadModel(dir)
        }
        // The index lacks the tensor: the index is named (it is the file searched).
        map.removeValue(forKey: "model.norm.weight")
        obj["weight_map"] = map
        try save(obj)
        expectBadInput([index + ": missing tensor model.norm.weight", "not in its weight_map"]) { try loadModel(dir) }
        // An entry no model of this config uses is blamed on the index that lists it.
        map["model.layers.7.mlp.up_proj.weight"] = "model-00001-of-00004.safetensors"
        map["model.norm.weight"] = "model-00004-of-00004.safetensors"
        obj["weight_map"] = map
        try save(obj)
        expectBadInput([index, "unexpected tensor model.layers.7.mlp.up_proj.weight"]) {
            try Checkpoint(directory: dir).checkNoUnexpectedTensors()
        }
    }

    func testMissingTensorNamesTheFileSearched() throws {
        let single = try copyFixture()
        let ckpt = try Checkpoint(directory: single)
        var buffer = [Float](repeating: 0, count: 32)
        expectBadInput([single + "/model.safetensors: missing tensor model.layers.9.input_layernorm.weight"]) {
            try ckpt.load("model.layers.9.input_layernorm.weight", shape: [32], into: &buffer)
        }
        let gguf = Fixtures.root + "/gguf/llama_tied_v2.gguf"
        let model = try Checkpoint(path: gguf)
        expectBadInput([gguf + ": missing tensor model.layers.9.input_layernorm.weight"]) {
            try model.load("model.layers.9.input_layernorm.weight", shape: [32], into: &buffer)
        }
    }

    // MARK: - config.json

    func testConfigValues() throws {
        let dir = try copyFixture()
        let path = dir + "/config.json"
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        func expect(_ edit: [String: Any?], _ contains: [String], line: UInt = #line) throws {
            var cfg = original
            for (k, v) in edit {
                if let v { cfg[k] = v } else { cfg.removeValue(forKey: k) }
            }
            try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: path))
            expectBadInput(["config.json"] + contains, line: line) { _ = try ModelConfig.load(path: path) }
        }
        try expect(["num_attention_heads": nil], ["missing num_attention_heads"])
        try expect(["hidden_size": "32"], ["hidden_size must be a number, got 32"])
        try expect(["tie_word_embeddings": "yes"], ["tie_word_embeddings must be true or false, got yes"])
        try expect(["num_hidden_layers": 0], ["num_hidden_layers must be a positive integer, got 0"])
        try expect(["intermediate_size": -64], ["intermediate_size must be a positive integer, got -64"])
        try expect(["vocab_size": 96.5], ["vocab_size must be a positive integer, got 96.5"])
        try expect(["num_hidden_layers": Int64.max], ["num_hidden_layers", "is larger than the limit of 4096"])
        try expect(["hidden_size": 30, "head_dim": nil], ["hidden_size 30 is not a multiple of num_attention_heads 4"])
        try expect(["num_key_value_heads": 3], ["num_attention_heads 4 is not a multiple of num_key_value_heads 3"])
        try expect(["rms_norm_eps": 0], ["rms_norm_eps must be a positive number, got 0"])
        try expect(["model_type": "llama\nx"], ["model_type 'llama\\nx' is not supported"])
        try "{\"model_type\": \"llama\",".write(toFile: path, atomically: true, encoding: .utf8)
        expectBadInput([path, "not a JSON object"]) { _ = try ModelConfig.load(path: path) }
        expectBadInput([dir + "/none.json", "file not found"]) { _ = try ModelConfig.load(path: dir + "/none.json") }
    }

    // MARK: - GGUF

    /// llama_tied_v2.gguf's bytes, and the offset just past the first occurrence of `marker` (a key or tensor name).
    func ggufBytes() throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/gguf/llama_tied_v2.gguf")))
    }

    func after(_ marker: String, in b: [UInt8]) -> Int {
        let m = Array(marker.utf8)
        let i = (0...(b.count - m.count)).first { b[$0..<($0 + m.count)].elementsEqual(m) }!
        return i + m.count
    }

    func put<T: FixedWidthInteger>(_ v: T, at offset: Int, in b: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { for (k, x) in $0.enumerated() { b[offset + k] = x } }
    }

    func testGGUFHeaderAndTensorInfos() throws {
        let dir = temporaryDirectory("gguf")
        func write(_ name: String, _ b: [UInt8]) -> String {
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(b)))
            return dir + "/" + name
        }
        let good = try ggufBytes()
        var b = good
        b[3] = 0x47
        let magic = write("magic.gguf", b)
        expectBadInput(["magic.gguf", "not a GGUF file", "47 47 55 47"]) { _ = try Checkpoint(path: magic) }
        b = good
        put(UInt32(7), at: 4, in: &b)
        let version = write("version.gguf", b)
        expectBadInput(["version.gguf", "GGUF version 7 is not supported"]) { _ = try Checkpoint(path: version) }
        let header = write("header.gguf", Array(good.prefix(20)))
        expectBadInput(["header.gguf", "truncated GGUF file", "the metadata count"]) { _ = try Checkpoint(path: header) }
        b = good
        put(UInt64(1) << 40, at: 8, in: &b)
        let count = write("count.gguf", b)
        expectBadInput(["count.gguf", "1099511627776 tensor infos", "needs at least 24 bytes each"]) { _ = try Checkpoint(path: count) }
        b = good
        put(UInt64.max, at: 24, in: &b)
        let length = write("length.gguf", b)
        expectBadInput(["length.gguf", "metadata key 0", "needs 18446744073709551615 bytes"]) { _ = try Checkpoint(path: length) }
        let cut = write("cut.gguf", Array(good.prefix(good.count - 64)))
        expectBadInput(["cut.gguf", "out of range", "data section has"]) { _ = try Checkpoint(path: cut) }
        // token_embd.weight: name, n_dims (2), two dims, then the ggml type.
        b = good
        put(UInt32(99), at: after("token_embd.weight", in: b) + 4 + 16, in: &b)
        let type = write("type.gguf", b)
        expectBadInput(["type.gguf", "tensor token_embd.weight", "unknown ggml type 99"]) { _ = try Checkpoint(path: type) }
        b = good
        put(UInt64(1) << 30, at: after("token_embd.weight", in: b) + 4 + 16 + 4, in: &b)
        let offset = write("offset.gguf", b)
        expectBadInput(["offset.gguf", "tensor token_embd.weight", "out of range"]) { _ = try Checkpoint(path: offset) }
    }

    func testGGUFMetadata() throws {
        let dir = temporaryDirectory("gguf")
        let good = try ggufBytes()
        var b = good
        let arch = after("general.architecture", in: b) + 4 + 8  // value type, string length, then "llama"
        for (k, c) in "mamba".utf8.enumerated() { b[arch + k] = c }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/arch.gguf", contents: Data(b)))
        expectBadInput(["arch.gguf", "general.architecture 'mamba' is not supported; expected llama"]) { _ = try Checkpoint(path: dir + "/arch.gguf") }
        // One byte of llama.block_count flipped made a model of 16M layers: a hang before the limit.
        b = good
        put(UInt32(1 << 24 + 2), at: after("llama.block_count", in: b) + 4, in: &b)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/layers.gguf", contents: Data(b)))
        expectBadInput(["layers.gguf", "num_hidden_layers 16777218 is larger than the limit of 4096"]) { _ = try Checkpoint(path: dir + "/layers.gguf") }
        b = good
        put(UInt32(8), at: after("llama.context_length", in: b), in: &b)  // u32 → string: the value becomes a length
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/vtype.gguf", contents: Data(b)))
        expectBadInput(["vtype.gguf", "truncated GGUF file"]) { _ = try Checkpoint(path: dir + "/vtype.gguf") }
        b = good
        put(UInt32(13), at: after("llama.context_length", in: b), in: &b)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/utype.gguf", contents: Data(b)))
        expectBadInput(["utype.gguf", "metadata llama.context_length: unknown value type 13"]) { _ = try Checkpoint(path: dir + "/utype.gguf") }
    }

    // MARK: - tokenizer.json

    func testTokenizerJSON() throws {
        let dir = temporaryDirectory("tokjson")
        func write(_ name: String, _ text: String) -> String {
            try! text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            return dir + "/" + name
        }
        let notJSON = write("text.json", "model: BPE")
        expectBadInput(["text.json", "not a JSON object"]) { _ = try Tokenizer(model: notJSON) }
        let unigram = write("unigram.json", #"{"model": {"type": "Unigram", "vocab": []}}"#)
        expectBadInput(["unigram.json", "model.type 'Unigram' is not supported; expected BPE"]) { _ = try Tokenizer(model: unigram) }
        let merge = write("merge.json", #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a c"]}}"#)
        expectBadInput(["merge.json", "model.merges[0]", "\"c\"", "not in model.vocab"]) { _ = try Tokenizer(model: merge) }
        let made = write("made.json", #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}}"#)
        expectBadInput(["made.json", "model.merges[0] makes \"ab\""]) { _ = try Tokenizer(model: made) }
        // An id of 252000000 made a table that long (a hang in the fuzzer).
        let huge = write("hugeid.json", #"{"model": {"type": "BPE", "vocab": {"a": 252000000}, "merges": []}}"#)
        expectBadInput(["hugeid.json", "id 252000000 is past the limit"]) { _ = try Tokenizer(model: huge) }
        let added = write("added.json", #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": "x"}]}"#)
        expectBadInput(["added.json", "added_tokens[0]", "\"id\""]) { _ = try Tokenizer(model: added) }
    }
}
