// GGUF: dequantisation against gguf-py (every supported type, k-quants included), names and q/k order against
// transformers' GGUF loader (llama and qwen2), the loss against transformers, metadata of every type,
// tokenizer.json from metadata, the convert command, and bad files (each a one-line .badInput naming the file).
// Fixtures: scripts/make_gguf_fixtures.py (llama, tokenizers) and scripts/make_kquant_fixtures.py (k-quants, qwen2).
import Foundation
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapSupport

enum GGUFFixtures {
    static let dir = Fixtures.root + "/gguf"
    static let models = ["llama_mixed", "llama_tied_v2", "qwen2_tied", "qwen2_untied"]
    /// Models without output.weight (lm_head tied to the embedding).
    static let tied: Set<String> = ["llama_tied_v2", "qwen2_tied"]
    static func path(_ name: String) -> String { dir + "/" + name + ".gguf" }

    static func reference(_ name: String) throws -> Fixtures.Reference {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/\(name).reference.json"))) as! [String: Any]
        return Fixtures.Reference(
            windows: json["windows"] as! Int, seqLen: json["seq_len"] as! Int, loss: (json["loss"] as! NSNumber).doubleValue,
            file: try SafeTensorsFile(path: dir + "/\(name).reference.safetensors"))
    }
}

/// Writes GGUF files for the bad-input tests: metadata in order, tensors zero-filled unless bytes are given.
enum GGUFTestWriter {
    struct Tensor {
        var name: String
        var dims: [Int]
        var type: UInt32 = 0
        var bytes: [UInt8]? = nil
    }

    static func append<T: FixedWidthInteger>(_ x: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
    }

    static func append(_ s: String, to out: inout [UInt8]) {
        append(UInt64(s.utf8.count), to: &out)
        out.append(contentsOf: Array(s.utf8))
    }

    /// A value as the engine's GGUF writer encodes it (PrunedGGUFWriter; checked against gguf-py by the
    /// Python tests that read its files).
    static func appendValue(_ v: GGUFValue, to out: inout [UInt8]) {
        var d = Data()
        v.encode(into: &d)
        out.append(contentsOf: d)
    }

    static func encode(version: UInt32 = 3, metadata: [(String, GGUFValue)], tensors: [Tensor], alignment: Int = 32) -> [UInt8] {
        var out = Array("GGUF".utf8)
        append(version, to: &out)
        append(UInt64(tensors.count), to: &out)
        append(UInt64(metadata.count), to: &out)
        for (k, v) in metadata {
            append(k, to: &out)
            append(v.typeID, to: &out)
            appendValue(v, to: &out)
        }
        var offset = 0
        var blobs: [[UInt8]] = []
        for t in tensors {
            let bytes = t.bytes ?? {
                let type = GGMLType.all[t.type]!
                return [UInt8](repeating: 0, count: t.dims.reduce(1, *) / type.blockSize * type.blockBytes)
            }()
            append(t.name, to: &out)
            append(UInt32(t.dims.count), to: &out)
            for d in t.dims { append(UInt64(d), to: &out) }
            append(t.type, to: &out)
            append(UInt64(offset), to: &out)
            blobs.append(bytes)
            offset += (bytes.count + alignment - 1) / alignment * alignment
        }
        for blob in blobs {
            while out.count % alignment != 0 { out.append(0) }
            out.append(contentsOf: blob)
        }
        while out.count % alignment != 0 { out.append(0) }
        return out
    }

    /// A one-layer llama GGUF, F32 zeros (hidden 32, 2 heads / 1 kv head, FFN 64, vocab 8) with edits.
    static func tinyModel(hidden: Int = 32, ffn: Int = 64, metadata edits: [String: GGUFValue] = [:],
                          types: [String: UInt32] = [:]) -> (metadata: [(String, GGUFValue)], tensors: [Tensor]) {
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")), ("llama.block_count", .u32(1)),
            ("llama.embedding_length", .u32(UInt32(hidden))), ("llama.feed_forward_length", .u32(UInt32(ffn))),
            ("llama.attention.head_count", .u32(2)), ("llama.attention.head_count_kv", .u32(1)),
            ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)), ("llama.rope.freq_base", .f32(10000)),
        ]
        for (k, v) in edits {
            if let i = meta.firstIndex(where: { $0.0 == k }) { meta[i].1 = v } else { meta.append((k, v)) }
        }
        let h = hidden, kv = hidden / 2
        var tensors = [
            Tensor(name: "token_embd.weight", dims: [h, 8]), Tensor(name: "output_norm.weight", dims: [h]),
            Tensor(name: "blk.0.attn_norm.weight", dims: [h]), Tensor(name: "blk.0.ffn_norm.weight", dims: [h]),
            Tensor(name: "blk.0.attn_q.weight", dims: [h, h]), Tensor(name: "blk.0.attn_k.weight", dims: [h, kv]),
            Tensor(name: "blk.0.attn_v.weight", dims: [h, kv]), Tensor(name: "blk.0.attn_output.weight", dims: [h, h]),
            Tensor(name: "blk.0.ffn_gate.weight", dims: [h, ffn]), Tensor(name: "blk.0.ffn_up.weight", dims: [h, ffn]),
            Tensor(name: "blk.0.ffn_down.weight", dims: [ffn, h]),
        ]
        for i in tensors.indices { if let t = types[tensors[i].name] { tensors[i].type = t } }
        return (meta, tensors)
    }

    static func write(_ path: String, version: UInt32 = 3, _ model: (metadata: [(String, GGUFValue)], tensors: [Tensor])) {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(encode(version: version, metadata: model.metadata, tensors: model.tensors))))
    }
}

final class GGUFTests: XCTestCase {
    func loadModel(_ path: String) throws {
        let ckpt = try Checkpoint(path: path)
        let _: Stage<Float> = try LocalEngine.load(ckpt, seqLen: 4, maxBatch: 1, training: false)
    }

    // MARK: reading

    /// Every tensor dequantises bit for bit to gguf-py's `dequantize` (q/k rows back in HF order), which the
    /// fixture script checked to equal transformers' GGUF loader; Double loads give the same values.
    func testEveryTensorMatchesTheReferenceBitForBit() throws {
        for name in GGUFFixtures.models {
            let ref = try GGUFFixtures.reference(name)
            let ckpt = try Checkpoint(path: GGUFFixtures.path(name))
            XCTAssertTrue(ckpt.source is GGUFModel, name)
            XCTAssertEqual(Set(ckpt.source.tensorNames), ParamLayout.allNames(ckpt.config), name)
            XCTAssertNoThrow(try ckpt.checkNoUnexpectedTensors(), name)
            XCTAssertEqual(ckpt.unclaimedTensors(), [], name)
            let names = ref.file.tensors.keys.filter { $0 != "logits" }
            XCTAssertEqual(Set(names), Set(ckpt.source.tensorNames), name)
            for t in names {
                let expected = ref.tensor(t)
                let shape = ref.file.tensors[t]!.shape
                XCTAssertEqual(try ckpt.source.tensorInfo(t).shape, shape, "\(name) \(t)")
                var got = [Float](repeating: .nan, count: expected.count)
                try got.withUnsafeMutableBufferPointer { try ckpt.load(t, shape: shape, into: $0.baseAddress!) }
                XCTAssertTrue(zip(got, expected).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(name) \(t): max |diff| \(maxAbsDiff(got, expected))")
                var wide = [Double](repeating: .nan, count: expected.count)
                try wide.withUnsafeMutableBufferPointer { try ckpt.load(t, shape: shape, into: $0.baseAddress!) }
                XCTAssertTrue(zip(wide, expected).allSatisfy { $0 == Double($1) }, "\(name) \(t) as Double")
            }
        }
    }

    /// Raw Q5_0, Q5_1 and k-quant blocks (random bytes with finite scales, all-0x00, all-0xFF with the largest
    /// and the smallest f16 scales; tensors of several blocks and rows) decode bit for bit as gguf-py's
    /// `dequantize` (Q8_K, which gguf-py lacks, as ggml's f32 d · q), as Float and as Double.
    func testKQuantBlocksMatchGGUFPyBitForBit() throws {
        let f = try GGUFFile(path: GGUFFixtures.dir + "/kquants.gguf")
        let expected = try SafeTensorsFile(path: GGUFFixtures.dir + "/kquants.expected.safetensors")
        let ref = Fixtures.Reference(windows: 0, seqLen: 0, loss: 0, file: expected)
        XCTAssertEqual(Set(f.tensorList.map(\.type.name)), ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"])
        XCTAssertEqual(Set(f.tensors.keys), Set(expected.tensors.keys))
        for t in f.tensorList {
            XCTAssertTrue(t.type.canDequantize, t.name)
            XCTAssertEqual(t.shape, expected.tensors[t.name]!.shape, t.name)
            let want = ref.tensor(t.name)
            var got = [Float](repeating: .nan, count: t.count)
            got.withUnsafeMutableBufferPointer { dequantize(f.data(t), type: t.type, count: t.count, into: $0.baseAddress!) }
            let same = zip(got, want).filter { $0.bitPattern == $1.bitPattern }.count
            XCTAssertEqual(same, t.count, "\(t.name): \(t.count - same) values differ, max |diff| \(maxAbsDiff(got, want))")
            var wide = [Double](repeating: .nan, count: t.count)
            wide.withUnsafeMutableBufferPointer { dequantize(f.data(t), type: t.type, count: t.count, into: $0.baseAddress!) }
            XCTAssertTrue(zip(wide, want).allSatisfy { $0 == Double($1) }, "\(t.name) as Double")
            // The all-zero block decodes to zeros; the others are not all zero (the test could not pass by accident).
            XCTAssertEqual(want.allSatisfy { $0 == 0 }, t.name.hasSuffix(".zeros"), t.name)
        }
        // A k-quant tensor cut short: one line naming it, its type and the bytes it needs.
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: f.path)))
        let last = f.tensorList.max { $0.offset < $1.offset }!
        let dir = temporaryDirectory("gguf")
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/short.gguf", contents: Data(bytes[0..<(f.dataStart + last.offset + last.byteCount - 1)])))
        expectBadInput(["short.gguf", "tensor \(last.name)", "out of range", "\(last.type.name) dims"]) { _ = try GGUFFile(path: dir + "/short.gguf") }
        let cli = try runProcess(binaryPath, ["inspect", "--model", dir + "/short.gguf"])
        XCTAssertEqual(cli.status, 2, cli.stderr)
        XCTAssertEqual(cli.stderr.split(separator: "\n").count, 1, cli.stderr)
        XCTAssertTrue(cli.stderr.contains("tensor \(last.name)"), cli.stderr)
    }

    /// qwen2: q/k/v biases, rope base from qwen2.rope.freq_base, no o_proj bias, tied or separate output.
    func testQwen2ConfigAndNames() throws {
        for name in ["qwen2_tied", "qwen2_untied"] {
            let m = try GGUFModel(path: GGUFFixtures.path(name))
            let c = m.config
            XCTAssertEqual(c.modelType, "qwen2", name)
            XCTAssertEqual([c.layers, c.hidden, c.intermediate, c.heads, c.kvHeads, c.headDim, c.vocabSize], [3, 32, 64, 4, 2, 8, 96], name)
            XCTAssertTrue(c.qkvBias, name)
            XCTAssertFalse(c.attentionOutputBias, name)
            XCTAssertEqual(c.rope.theta, 1_000_000, name)
            XCTAssertEqual(c.rmsEps, 1e-6, name)
            XCTAssertEqual(c.tieEmbeddings, name == "qwen2_tied", name)
            XCTAssertEqual(c.raw["architectures"] as? [String], ["Qwen2ForCausalLM"], name)
            XCTAssertNil(c.raw["attention_bias"], name)
            XCTAssertEqual(m.hfToGGUF["model.layers.2.self_attn.k_proj.bias"], "blk.2.attn_k.bias", name)
            XCTAssertNil(m.permutedHeads("model.layers.0.self_attn.q_proj.weight"), name)
        }
        let types = try GGUFModel(path: GGUFFixtures.path("qwen2_untied"))
        XCTAssertEqual(Set(try types.tensorNames.map { try types.tensorInfo($0).dtype }), ["F32", "F16", "Q8_0", "Q4_0", "Q5_0", "Q5_1"])
        XCTAssertNotNil(try GGUFModel(path: GGUFFixtures.path("llama_mixed")).permutedHeads("model.layers.0.self_attn.q_proj.weight"))
        // A qwen2 file without its q bias: the loader names the missing tensor.
        let f = try GGUFFile(path: GGUFFixtures.path("qwen2_tied"))
        let kept = f.tensorList.filter { $0.name != "blk.1.attn_q.bias" }.map { t in
            GGUFTestWriter.Tensor(name: t.name, dims: t.dims, type: t.type.id, bytes: [UInt8](UnsafeRawBufferPointer(start: f.data(t), count: t.byteCount)))
        }
        let dir = temporaryDirectory("gguf")
        let pairs = f.metadataKeys.map { ($0, f.metadata[$0]!) }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/nobias.gguf", contents: Data(GGUFTestWriter.encode(metadata: pairs, tensors: kept))))
        expectBadInput(["nobias.gguf", "missing tensor model.layers.1.self_attn.q_proj.bias"]) { try loadModel(dir + "/nobias.gguf") }
    }

    func testStorageTypesAreTheOnesWritten() throws {
        let m = try GGUFModel(path: GGUFFixtures.path("llama_mixed"))
        let types = Dictionary(uniqueKeysWithValues: try m.tensorNames.map { ($0, try m.tensorInfo($0).dtype) })
        XCTAssertEqual(Set(types.values), ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"])
        XCTAssertEqual(types["model.embed_tokens.weight"], "Q8_0")
        XCTAssertEqual(types["model.layers.0.self_attn.q_proj.weight"], "Q4_0")
        XCTAssertEqual(types["model.layers.0.self_attn.k_proj.weight"], "Q4_1")
        XCTAssertEqual(types["model.layers.0.mlp.gate_proj.weight"], "BF16")
        XCTAssertEqual(types["lm_head.weight"], "Q4_1")
        XCTAssertEqual(m.hfToGGUF["model.layers.1.post_attention_layernorm.weight"], "blk.1.ffn_norm.weight")
    }

    func testConfigFromMetadata() throws {
        let c = try Checkpoint(path: GGUFFixtures.path("llama_mixed")).config
        XCTAssertEqual(c.modelType, "llama")
        XCTAssertEqual([c.layers, c.hidden, c.intermediate, c.heads, c.kvHeads, c.headDim, c.vocabSize], [2, 64, 64, 4, 2, 16, 32])
        XCTAssertFalse(c.tieEmbeddings)
        XCTAssertEqual(c.rope.theta, 10000)
        XCTAssertEqual(c.rope.kind, .default)
        XCTAssertEqual(c.rmsEps, 1e-5)  // the f32 metadata value by its shortest spelling
        let t = try Checkpoint(path: GGUFFixtures.path("llama_tied_v2")).config
        XCTAssertEqual([t.layers, t.hidden, t.intermediate, t.heads, t.kvHeads, t.headDim, t.vocabSize], [2, 32, 64, 2, 1, 16, 48])
        XCTAssertTrue(t.tieEmbeddings)
        XCTAssertEqual(t.rope.theta, 500000)
        XCTAssertEqual(t.rmsEps, 1e-6)
        XCTAssertEqual(t.raw["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(t.raw["architectures"] as? [String], ["LlamaForCausalLM"])
        // Linear RoPE scaling from llama.rope.scaling.*.
        let dir = temporaryDirectory("gguf")
        GGUFTestWriter.write(dir + "/linear.gguf", GGUFTestWriter.tinyModel(metadata: [
            "llama.rope.scaling.type": .string("linear"), "llama.rope.scaling.factor": .f32(4),
        ]))
        let l = try Checkpoint(path: dir + "/linear.gguf").config
        XCTAssertEqual(l.rope.kind, .linear)
        XCTAssertEqual(l.rope.factor, 4)
    }

    func testVersion2HeaderAndAlignment() throws {
        let f = try GGUFFile(path: GGUFFixtures.path("llama_tied_v2"))
        XCTAssertEqual(f.version, 2)
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataStart % 64, 0)
        XCTAssertEqual(try GGUFFile(path: GGUFFixtures.path("llama_mixed")).version, 3)
        // A version-2 header from the test writer too.
        let dir = temporaryDirectory("gguf")
        GGUFTestWriter.write(dir + "/v2.gguf", version: 2, GGUFTestWriter.tinyModel())
        XCTAssertEqual(try GGUFFile(path: dir + "/v2.gguf").version, 2)
        try loadModel(dir + "/v2.gguf")
    }

    func testMetadataOfEveryValueType() throws {
        let f = try GGUFFile(path: GGUFFixtures.dir + "/metadata_types.gguf")
        let m = f.metadata
        XCTAssertEqual(m["test.u8"], .u8(200))
        XCTAssertEqual(m["test.i8"], .i8(-100))
        XCTAssertEqual(m["test.u16"], .u16(60000))
        XCTAssertEqual(m["test.i16"], .i16(-30000))
        XCTAssertEqual(m["test.u32"], .u32(4_000_000_000))
        XCTAssertEqual(m["test.i32"], .i32(-2_000_000_000))
        XCTAssertEqual(m["test.f32"], .f32(0.1))
        XCTAssertEqual(try f.double("test.f32"), 0.1)
        XCTAssertEqual(m["test.bool"], .bool(true))
        XCTAssertEqual(m["test.string"], .string("héllo ▁wörld"))
        XCTAssertEqual(m["test.array_i16"], .array(3, [.i16(1), .i16(-2), .i16(3)]))
        XCTAssertEqual(m["test.u64"], .u64(9_223_372_036_854_775_813))
        XCTAssertEqual(m["test.i64"], .i64(-4_611_686_018_427_387_904))
        XCTAssertEqual(m["test.f64"], .f64(1e-300))
        XCTAssertEqual(m["test.nested"], .array(9, [.array(8, [.string("a"), .string("b")]), .array(8, [.string("c")])]))
        XCTAssertEqual(f.metadataKeys.first, "general.architecture")
        XCTAssertEqual(f.tensorList.count, 0)
        expectBadInput(["metadata test.string must be an integer, got string"]) { _ = try f.int("test.string") }
        // The test writer's encoding of the same values reads back identically.
        let dir = temporaryDirectory("gguf")
        let pairs = f.metadataKeys.map { ($0, m[$0]!) }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/m.gguf", contents: Data(GGUFTestWriter.encode(metadata: pairs, tensors: []))))
        XCTAssertEqual(try GGUFFile(path: dir + "/m.gguf").metadata, m)
    }

    /// The loss (and logits) of the engine on the GGUF equal transformers' on the same file.
    func testLossMatchesTransformers() throws {
        for name in GGUFFixtures.models {
            let ref = try GGUFFixtures.reference(name)
            let ckpt = try Checkpoint(path: GGUFFixtures.path(name))
            let c = ckpt.config
            let data = try TokenWindows(path: GGUFFixtures.dir + "/\(name).tokens.bin", seqLen: ref.seqLen, vocabSize: c.vocabSize)
            let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: ref.seqLen, maxBatch: 1, training: false)
            let refLogits = ref.tensor("logits")
            let perWindow = ref.seqLen * c.vocabSize
            var worst = 0.0
            let r = LocalEngine.run(stage, data: data, windows: Array(0..<data.windowCount), microBatch: 1, backward: false) { w, logits in
                for i in 0..<perWindow { worst = max(worst, abs(Double(logits[i]) - Double(refLogits[w * perWindow + i]))) }
            }
            print("gguf parity \(name): loss \(r.loss) vs \(ref.loss), logits max |diff| \(worst)")
            XCTAssertEqual(r.windows, ref.windows)
            XCTAssertEqual(r.loss, ref.loss, accuracy: 1e-4, name)
            XCTAssertLessThan(worst, 1e-4, name)
        }
    }

    // MARK: tokenizer.json

    func roundTrip(_ o: Any) throws -> NSObject {
        try JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) as! NSObject
    }

    /// A byte-level BPE trained by `tokenizers`, stored in a GGUF and rebuilt: same vocabulary, merges, special
    /// tokens and pre-tokenizer (Digits + ByteLevel for tokenizer.ggml.pre = smollm) as the original.
    func testGPT2TokenizerJSONMatchesTheOriginal() throws {
        let f = try GGUFFile(path: GGUFFixtures.dir + "/tokenizer_gpt2.gguf")
        let got = try roundTrip(try f.tokenizerJSON()) as! [String: Any]
        let expectedFile = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: GGUFFixtures.dir + "/tokenizer_gpt2.expected.json"))) as! [String: Any]
        let want = expectedFile["tokenizer"] as! [String: Any]
        let gm = got["model"] as! [String: Any], wm = want["model"] as! [String: Any]
        XCTAssertEqual(gm["type"] as? String, "BPE")
        XCTAssertEqual(gm["vocab"] as? NSDictionary, wm["vocab"] as? NSDictionary)
        let wantMerges = (wm["merges"] as! [Any]).map { ($0 as? String) ?? ($0 as! [String]).joined(separator: " ") }
        XCTAssertEqual(gm["merges"] as? [String], wantMerges)
        XCTAssertEqual(gm["byte_fallback"] as? Bool, false)
        XCTAssertEqual(gm["ignore_merges"] as? Bool, false)
        XCTAssertEqual(got["pre_tokenizer"] as? NSDictionary, want["pre_tokenizer"] as? NSDictionary)
        XCTAssertEqual((got["decoder"] as! [String: Any])["type"] as? String, "ByteLevel")
        XCTAssertEqual((got["post_processor"] as! [String: Any])["type"] as? String, "ByteLevel")
        func added(_ o: [String: Any]) -> [String] {
            (o["added_tokens"] as! [[String: Any]]).map { "\($0["id"]!) \($0["content"]!) \($0["special"] as! Bool)" }.sorted()
        }
        XCTAssertEqual(added(got), added(want))
        let config = try f.tokenizerConfigJSON()
        XCTAssertEqual(config["bos_token"] as? String, "<|im_start|>")
        XCTAssertEqual(config["eos_token"] as? String, "<|im_end|>")
        XCTAssertEqual(config["add_bos_token"] as? Bool, false)
    }

    /// A SentencePiece vocabulary with scores and no merges: merges generated as transformers does, byte
    /// fallback, "▁" normalizer, BOS added by the post-processor.
    func testLlamaTokenizerJSON() throws {
        let f = try GGUFFile(path: GGUFFixtures.dir + "/tokenizer_llama.gguf")
        let got = try roundTrip(try f.tokenizerJSON()) as! [String: Any]
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: GGUFFixtures.dir + "/tokenizer_llama.expected.json"))) as! [String: Any]
        let m = got["model"] as! [String: Any]
        XCTAssertEqual(m["merges"] as? [[String]], expected["merges"] as? [[String]])
        XCTAssertEqual(m["byte_fallback"] as? Bool, true)
        XCTAssertEqual(m["fuse_unk"] as? Bool, true)
        XCTAssertEqual(m["unk_token"] as? String, "<unk>")
        XCTAssertEqual((m["vocab"] as! [String: Any]).count, 314)
        XCTAssertEqual((m["vocab"] as! [String: Any])["<0x41>"] as? Int, 3 + 0x41)
        let norm = got["normalizer"] as! [String: Any]
        XCTAssertEqual((norm["normalizers"] as! [[String: Any]]).map { $0["type"] as! String }, ["Prepend", "Replace"])
        let post = got["post_processor"] as! [String: Any]
        XCTAssertEqual(post["type"] as? String, "TemplateProcessing")
        XCTAssertEqual(((post["special_tokens"] as! [String: Any])["<s>"] as! [String: Any])["ids"] as? [Int], [1])
        let added = (got["added_tokens"] as! [[String: Any]]).map { $0["content"] as! String }
        XCTAssertEqual(added, ["<unk>", "<s>", "</s>"])
        XCTAssertEqual(try f.tokenizerConfigJSON()["add_bos_token"] as? Bool, true)
        // A model GGUF without tokenizer metadata says so.
        expectBadInput(["llama_mixed.gguf", "missing metadata tokenizer.ggml.model"]) {
            _ = try GGUFFile(path: GGUFFixtures.path("llama_mixed")).tokenizerJSON()
        }
    }

    // MARK: bad input

    func testWrongMagicAndUnsupportedVersion() throws {
        let dir = temporaryDirectory("gguf")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: GGUFFixtures.path("llama_tied_v2"))))
        bytes[0] = UInt8(ascii: "X")
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/magic.gguf", contents: Data(bytes)))
        expectBadInput(["magic.gguf", "not a GGUF file", "GGUF", "58 47 55 46"]) { try loadModel(dir + "/magic.gguf") }
        bytes[0] = UInt8(ascii: "G")
        bytes[4] = 1
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/v1.gguf", contents: Data(bytes)))
        expectBadInput(["v1.gguf", "GGUF version 1 is not supported; expected 2 or 3"]) { try loadModel(dir + "/v1.gguf") }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/empty.gguf", contents: Data()))
        expectBadInput(["empty.gguf", "truncated", "magic"]) { try loadModel(dir + "/empty.gguf") }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/model.bin", contents: Data(bytes)))
        expectBadInput(["model.bin", "expected a Hugging Face checkpoint folder or a .gguf file"]) { try loadModel(dir + "/model.bin") }
    }

    /// Every cut through the header and the tensor infos, and cuts into the data, give a one-line error.
    func testTruncatedFile() throws {
        let path = GGUFFixtures.path("llama_tied_v2")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let f = try GGUFFile(path: path)
        let dataEnd = f.dataStart + f.tensorList.map { $0.offset + $0.byteCount }.max()!
        let dir = temporaryDirectory("gguf")
        let cutPath = dir + "/cut.gguf"
        // Every byte of the fixed header and the first keys, then a stride through the rest.
        var cuts = Array(0..<256) + Array(stride(from: 256, to: f.dataStart, by: 7))
        cuts += [f.dataStart + 1, (f.dataStart + dataEnd) / 2, dataEnd - 1]
        for cut in cuts {
            XCTAssertTrue(FileManager.default.createFile(atPath: cutPath, contents: Data(bytes[0..<cut])))
            do {
                _ = try GGUFFile(path: cutPath)
                XCTFail("cut at \(cut) of \(bytes.count) bytes was accepted")
            } catch let GradMapError.badInput(message) {
                XCTAssertTrue(message.hasPrefix(cutPath + ": "), message)
                XCTAssertFalse(message.contains("\n"), message)
                XCTAssertTrue(message.contains("truncated") || message.contains("out of range"), "cut \(cut): \(message)")
            }
        }
        // The messages say what was being read.
        XCTAssertTrue(FileManager.default.createFile(atPath: cutPath, contents: Data(bytes[0..<30])))
        expectBadInput(["cut.gguf", "truncated GGUF file: reading 13 metadata entries at byte 24", "file has 30"]) { _ = try GGUFFile(path: cutPath) }
        XCTAssertTrue(FileManager.default.createFile(atPath: cutPath, contents: Data(bytes[0..<300])))
        expectBadInput(["cut.gguf", "truncated GGUF file: reading metadata key 7 (length) at byte 295 needs 8 bytes, file has 300"]) { _ = try GGUFFile(path: cutPath) }
        XCTAssertTrue(FileManager.default.createFile(atPath: cutPath, contents: Data(bytes[0..<(dataEnd - 1)])))
        expectBadInput(["cut.gguf", "out of range", "data section has"]) { try loadModel(cutPath) }
    }

    func testUnsupportedQuantisationType() throws {
        let dir = temporaryDirectory("gguf")
        // IQ2_XXS (type 16) has blocks of 256 elements: a hidden size of 256 gives whole blocks.
        GGUFTestWriter.write(dir + "/iq2.gguf", GGUFTestWriter.tinyModel(hidden: 256, ffn: 256, types: ["blk.0.ffn_up.weight": 16]))
        let m = try GGUFModel(path: dir + "/iq2.gguf")
        XCTAssertEqual(try m.tensorInfo("model.layers.0.mlp.up_proj.weight").dtype, "IQ2_XXS")
        expectBadInput(["iq2.gguf", "blk.0.ffn_up.weight", "ggml type 16 (IQ2_XXS)", "cannot be dequantized",
                        "expected one of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K"]) {
            try loadModel(dir + "/iq2.gguf")
        }
        // A k-quant model of zeros loads (its rows are whole 256-element blocks).
        GGUFTestWriter.write(dir + "/q4k.gguf", GGUFTestWriter.tinyModel(hidden: 256, ffn: 256, types: ["blk.0.ffn_up.weight": 12, "blk.0.attn_q.weight": 14]))
        try loadModel(dir + "/q4k.gguf")
        // A type number ggml does not have.
        var model = GGUFTestWriter.tinyModel()
        model.tensors[0].type = 77
        model.tensors[0].bytes = [UInt8](repeating: 0, count: 4)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/t77.gguf", contents: Data(GGUFTestWriter.encode(metadata: model.metadata, tensors: [model.tensors[0]]))))
        expectBadInput(["t77.gguf", "token_embd.weight", "unknown ggml type 77"]) { _ = try GGUFFile(path: dir + "/t77.gguf") }
        // Rows that are not whole blocks.
        GGUFTestWriter.write(dir + "/rows.gguf", GGUFTestWriter.tinyModel(hidden: 32, ffn: 48, types: ["blk.0.ffn_down.weight": 2]))
        expectBadInput(["rows.gguf", "blk.0.ffn_down.weight", "Q4_0 rows need a multiple of 32 elements", "[48, 32]"]) { _ = try GGUFFile(path: dir + "/rows.gguf") }
    }

    func testMetadataDisagreeingWithTensorShapes() throws {
        let dir = temporaryDirectory("gguf")
        var model = GGUFTestWriter.tinyModel()
        if let i = model.metadata.firstIndex(where: { $0.0 == "llama.embedding_length" }) { model.metadata[i].1 = .u32(48) }
        GGUFTestWriter.write(dir + "/hidden.gguf", model)
        expectBadInput(["hidden.gguf", "metadata llama.embedding_length = 48 disagrees with tensor token_embd.weight shape [8, 32]"]) {
            try loadModel(dir + "/hidden.gguf")
        }
        GGUFTestWriter.write(dir + "/ffn.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.feed_forward_length": .u32(96)]))
        expectBadInput(["ffn.gguf", "metadata llama.feed_forward_length = 96 disagrees with tensor blk.0.ffn_gate.weight shape [64, 32]"]) {
            try loadModel(dir + "/ffn.gguf")
        }
        GGUFTestWriter.write(dir + "/kv.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.attention.head_count_kv": .u32(2)]))
        expectBadInput(["kv.gguf", "llama.attention.head_count_kv", "disagrees with tensor blk.0.attn_k.weight shape [16, 32]"]) {
            try loadModel(dir + "/kv.gguf")
        }
        GGUFTestWriter.write(dir + "/layers.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.block_count": .u32(0)]))
        expectBadInput(["layers.gguf", "llama.block_count must be positive"]) { try loadModel(dir + "/layers.gguf") }
        GGUFTestWriter.write(dir + "/vocab.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.vocab_size": .u32(9)]))
        expectBadInput(["vocab.gguf", "metadata llama.vocab_size = 9 disagrees with tensor token_embd.weight shape [8, 32]"]) {
            try loadModel(dir + "/vocab.gguf")
        }
        GGUFTestWriter.write(dir + "/arch.gguf", GGUFTestWriter.tinyModel(metadata: ["general.architecture": .string("gpt2")]))
        expectBadInput(["arch.gguf", "general.architecture 'gpt2' is not supported; expected llama, qwen2"]) { try loadModel(dir + "/arch.gguf") }
        GGUFTestWriter.write(dir + "/eps.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.attention.layer_norm_rms_epsilon": .string("small")]))
        expectBadInput(["eps.gguf", "llama.attention.layer_norm_rms_epsilon must be a number, got string"]) { try loadModel(dir + "/eps.gguf") }
        GGUFTestWriter.write(dir + "/yarn.gguf", GGUFTestWriter.tinyModel(metadata: ["llama.rope.scaling.type": .string("yarn")]))
        expectBadInput(["yarn.gguf", "llama.rope.scaling.type 'yarn' is not supported"]) { try loadModel(dir + "/yarn.gguf") }
        // An extra tensor llama.cpp writes for Llama 3 RoPE factors has no HF counterpart: reported, not ignored.
        var extra = GGUFTestWriter.tinyModel()
        extra.tensors.append(.init(name: "rope_freqs.weight", dims: [8]))
        GGUFTestWriter.write(dir + "/extra.gguf", extra)
        expectBadInput(["extra.gguf", "unexpected tensor rope_freqs.weight"]) { try loadModel(dir + "/extra.gguf") }
    }

    func testTensorDataOutOfRangeOrOverlapping() throws {
        let dir = temporaryDirectory("gguf")
        let model = GGUFTestWriter.tinyModel()
        var bytes = GGUFTestWriter.encode(metadata: model.metadata, tensors: model.tensors)
        let f0 = try { () throws -> GGUFFile in
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/ok.gguf", contents: Data(bytes)))
            return try GGUFFile(path: dir + "/ok.gguf")
        }()
        // Point the last tensor past the end: its offset field is the 8 bytes before the data section's padding.
        let last = model.tensors.last!.name
        let nameBytes = Array(last.utf8)
        let at = (0..<bytes.count - nameBytes.count).last { Array(bytes[$0..<$0 + nameBytes.count]) == nameBytes }!
        let offsetField = at + nameBytes.count + 4 + 8 * 2 + 4
        var off = f0.tensors[last]!.offset + 1024
        withUnsafeBytes(of: UInt64(off).littleEndian) { for i in 0..<8 { bytes[offsetField + i] = $0[i] } }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/range.gguf", contents: Data(bytes)))
        expectBadInput(["range.gguf", "tensor \(last)", "out of range"]) { _ = try GGUFFile(path: dir + "/range.gguf") }
        off = f0.tensors[last]!.offset - 32
        withUnsafeBytes(of: UInt64(off).littleEndian) { for i in 0..<8 { bytes[offsetField + i] = $0[i] } }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/overlap.gguf", contents: Data(bytes)))
        expectBadInput(["overlap.gguf", "overlaps"]) { _ = try GGUFFile(path: dir + "/overlap.gguf") }
        off = f0.tensors[last]!.offset + 4
        withUnsafeBytes(of: UInt64(off).littleEndian) { for i in 0..<8 { bytes[offsetField + i] = $0[i] } }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/align.gguf", contents: Data(bytes)))
        expectBadInput(["align.gguf", "not a multiple of the alignment 32"]) { _ = try GGUFFile(path: dir + "/align.gguf") }
        // Sizes that overflow, or that no file could hold.
        let cases: [(GGUFTestWriter.Tensor, String)] = [
            (.init(name: "a", dims: [1 << 40, 1 << 40], bytes: []), "tensor a: dims[1] = 1099511627776 is too large"),
            (.init(name: "a", dims: [1 << 61], type: 28, bytes: []), "tensor a: F64 dims [2305843009213693952] are too large"),
            (.init(name: "a", dims: [1 << 40], bytes: []), "tensor a: data [0, 4398046511104) out of range"),
            (.init(name: "a", dims: [4, 4, 4, 4, 4]), "tensor a: n_dims 5; expected 1 to 4"),
        ]
        for (t, message) in cases {
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/huge.gguf", contents: Data(GGUFTestWriter.encode(metadata: [], tensors: [t]))))
            expectBadInput(["huge.gguf", message]) { _ = try GGUFFile(path: dir + "/huge.gguf") }
        }
    }

    // MARK: command line

    func json(_ s: String) throws -> [String: Any] {
        let line = s.split(separator: "\n").last.map(String.init) ?? ""
        return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    }

    /// `convert` writes a folder that loads back with the same loss; `eval` reads the GGUF directly.
    func testConvertAndEvalCommands() throws {
        for name in GGUFFixtures.models {
            let ref = try GGUFFixtures.reference(name)
            let tokens = GGUFFixtures.dir + "/\(name).tokens.bin"
            // FP32 products: the reference loss is the float one (the machine's default may be bf16).
            let e = try runProcess(binaryPath, ["eval", "--model", GGUFFixtures.path(name), "--tokens", tokens, "--seq-len", "\(ref.seqLen)", "--matmul", "f32", "--json"])
            XCTAssertEqual(e.status, 0, e.stderr)
            let ggufLoss = (try json(e.stdout)["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(ggufLoss, ref.loss, accuracy: 1e-4, name)

            let out = temporaryDirectory("convert") + "/hf"
            let r = try runProcess(binaryPath, ["convert", "--model", GGUFFixtures.path(name), "--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
            XCTAssertEqual(files, ["config.json", "model.safetensors"], name)  // no tokenizer metadata in these fixtures
            let st = try SafeTensorsFile(path: out + "/model.safetensors")
            XCTAssertEqual(st.tensors["lm_head.weight"] == nil, GGUFFixtures.tied.contains(name), name)
            XCTAssertTrue(st.tensors.values.allSatisfy { $0.dtype == .f32 })
            let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
            XCTAssertEqual(cfg["model_type"] as? String, name.hasPrefix("qwen2") ? "qwen2" : "llama")
            XCTAssertEqual(cfg["torch_dtype"] as? String, "float32")
            XCTAssertEqual(cfg["tie_word_embeddings"] as? Bool, GGUFFixtures.tied.contains(name))
            let back = try runProcess(binaryPath, ["eval", "--model", out, "--tokens", tokens, "--seq-len", "\(ref.seqLen)", "--matmul", "f32", "--json"])
            XCTAssertEqual(back.status, 0, back.stderr)
            XCTAssertEqual((try json(back.stdout)["loss"] as! NSNumber).doubleValue, ggufLoss, accuracy: 1e-9, name)
            // The same weights, tensor for tensor.
            let folder = try Checkpoint(directory: out), gguf = try Checkpoint(path: GGUFFixtures.path(name))
            for n in gguf.source.tensorNames {
                let shape = try gguf.source.tensorInfo(n).shape
                var a = [Float](repeating: 0, count: shape.reduce(1, *)), b = a
                try a.withUnsafeMutableBufferPointer { try gguf.load(n, shape: shape, into: $0.baseAddress!) }
                try b.withUnsafeMutableBufferPointer { try folder.load(n, shape: shape, into: $0.baseAddress!) }
                XCTAssertEqual(a, b, "\(name) \(n)")
            }

            // An existing folder is refused without --force (exit 2, one line), replaced with it.
            let again = try runProcess(binaryPath, ["convert", "--model", GGUFFixtures.path(name), "--out", out])
            XCTAssertEqual(again.status, 2)
            XCTAssertEqual(again.stderr.split(separator: "\n").count, 1, again.stderr)
            XCTAssertTrue(again.stderr.contains("already exists; replaced only when forced"), again.stderr)
            let forced = try runProcess(binaryPath, ["convert", "--model", GGUFFixtures.path(name), "--out", out, "--force"])
            XCTAssertEqual(forced.status, 0, forced.stderr)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
            XCTAssertEqual(leftovers, ["hf"], "no partial folder left behind")
        }
    }

    func testConvertWritesTokenizerFilesAndRejectsBadInput() throws {
        // A tokenizer-only GGUF is not a model: convert fails with one line and leaves nothing behind.
        let root = temporaryDirectory("convert")
        let r = try runProcess(binaryPath, ["convert", "--model", GGUFFixtures.dir + "/tokenizer_gpt2.gguf", "--out", root + "/x"])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("tokenizer_gpt2.gguf"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root), [])
        // A model with a tokenizer: tiny model + the gpt2 tokenizer's metadata (vocab 360).
        let tok = try GGUFFile(path: GGUFFixtures.dir + "/tokenizer_gpt2.gguf")
        var model = GGUFTestWriter.tinyModel()
        model.metadata += tok.metadataKeys.filter { $0.hasPrefix("tokenizer.") }.map { ($0, tok.metadata[$0]!) }
        model.tensors[0].dims = [32, 360]
        GGUFTestWriter.write(root + "/withtok.gguf", model)
        let ok = try runProcess(binaryPath, ["convert", "--model", root + "/withtok.gguf", "--out", root + "/hf"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: root + "/hf"))
        XCTAssertEqual(files, ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        let tj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/hf/tokenizer.json"))) as! [String: Any]
        XCTAssertEqual(((tj["model"] as! [String: Any])["vocab"] as! [String: Any]).count, 360)
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/hf/config.json"))) as! [String: Any]
        XCTAssertEqual(cfg["vocab_size"] as? Int, 360)
        XCTAssertEqual(cfg["bos_token_id"] as? Int, tok.metadata["tokenizer.ggml.bos_token_id"]?.int)
        let missing = try runProcess(binaryPath, ["convert", "--model", root + "/none.gguf", "--out", root + "/y"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("none.gguf"), missing.stderr)
    }

    /// `inspect` reports a quantised GGUF's bytes as the file stores them: per tensor its ggml blocks (block
    /// sizes and bytes from the GGUF spec's type table), not elements × 4; the plan's per-rank stored bytes add
    /// up to the same total.
    func testInspectReportsStoredBytesOfQuantisedTensors() throws {
        let path = GGUFFixtures.path("qwen2_untied")  // Q8_0, Q5_0, Q5_1, Q4_0, F16 and F32 tensors, no tied copy
        let blocks: [String: (elements: Int, bytes: Int)] = [
            "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
            "Q5_0": (32, 22), "Q5_1": (32, 24),
        ]
        let ckpt = try Checkpoint(path: path)
        let summary = try ModelSummary(checkpoint: ckpt)
        var total = 0, elements = 0
        for s in ParamLayout.specs(ckpt.config, part: .whole(ckpt.config)) {
            let type = try ckpt.source.tensorInfo(s.name).dtype
            let b = try XCTUnwrap(blocks[type], "\(s.name): \(type)")
            XCTAssertEqual(summary.tensorBytes?[s.name], s.count / b.elements * b.bytes, s.name)
            total += s.count / b.elements * b.bytes
            elements += s.count
        }
        XCTAssertLessThan(total, elements * 2, "quantised tensors take less than F16 would")
        XCTAssertGreaterThan(summary.storedTypes.count, 3, "the fixture mixes types")
        let r = try runProcess(binaryPath, ["inspect", "--model", path, "--ranks", "2", "--seq-len", "8", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let model = o["model"] as! [String: Any]
        XCTAssertEqual(model["stored_bytes"] as? Int, total)
        XCTAssertEqual(model["stored_dtype"] as? String, try ckpt.source.tensorInfo("model.layers.0.self_attn.q_proj.weight").dtype)
        let plan = o["plan"] as! [[String: Any]]
        XCTAssertEqual(plan.count, 2)
        XCTAssertEqual(plan.reduce(0) { $0 + ($1["stored_bytes"] as! Int) }, total)
        for rank in plan { XCTAssertEqual(rank["parameter_bytes_f32"] as? Int, rank["weight_bytes"] as? Int, "f32 holds the decoded floats") }
    }
}
