// Writes the pruned model as a Hugging Face checkpoint that transformers loads unchanged: layers renumbered
// 0..L-K-1, config.json with num_hidden_layers (and per-layer lists such as layer_types) updated and every
// other key kept, the source dtype kept (BF16/F16 rounded to nearest even), no lm_head when tied. Replica 0's
// rank of each stage writes one shard with its tensors; rank 0 writes the index, config and tokenizer files.
// Everything goes to a temporary folder beside DIR, renamed at the end: a failed run leaves no partial DIR.
// Nor a temporary folder: a rank that fails or gets SIGTERM/SIGINT (Interrupt) removes it, and one left by a
// SIGKILLed writer is removed when the next prune to the same DIR starts.
import Foundation

/// Float only, like Pruner: the pipeline it writes from is the engine's float32 one.
public struct PrunedWriter {
    public let pipeline: Pipeline<Float>
    public let source: Checkpoint
    /// Original indices of the kept layers.
    public let kept: [Int]
    public let dtype: DType

    public init(pipeline: Pipeline<Float>, source: Checkpoint, kept: Set<Int>, dtype: DType) {
        self.pipeline = pipeline
        self.source = source
        self.kept = kept.sorted()
        self.dtype = dtype
    }

    /// The folder a run builds before renaming it to `out`.
    public static func temporaryPath(for out: String) -> String {
        let url = URL(fileURLWithPath: out)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial").path
    }

    /// Refuses an --out that is a file, or an existing folder without --force (before any work), and removes
    /// a temporary folder an earlier, SIGKILLed run left (every rank may: removal tolerates the others').
    public static func checkDestination(_ out: String, force: Bool) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw bad("out", out, "is a file; expected a folder to create") }
            guard force else { throw bad("out", out, "already exists; replaced only when forced") }
        }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw bad("out", out, "parent folder \(parent) does not exist")
        }
        try Interrupt.removeTree(temporaryPath(for: out))
    }

    /// New name of an original tensor name, or nil when its layer was removed.
    func renamed(_ name: String) -> String? {
        guard name.hasPrefix("model.layers.") else { return name }
        let rest = name.dropFirst("model.layers.".count)
        guard let dot = rest.firstIndex(of: "."), let l = Int(rest[..<dot]) else { return name }
        guard let j = kept.firstIndex(of: l) else { return nil }
        return "model.layers.\(j)" + rest[dot...]
    }

    /// Which stage writes which (renamed) tensors; the tied embedding is written once, by stage 0.
    func tensors(ofStage stage: Int) -> [(ParamSpec, String)] {
        let p = pipeline.placement.placement(rank: stage)
        let c = pipeline.stage.config
        return ParamLayout.specs(c, part: p.part).compactMap { s in
            if s.name == "model.embed_tokens.weight" && !p.part.embedding { return nil }
            if let l = s.layer, !kept.contains(l) { return nil }
            return renamed(s.name).map { (s, $0) }
        }
    }

    public func write(to out: String, force: Bool, extraFiles: [String: Data] = [:]) throws {
        let tmp = PrunedWriter.temporaryPath(for: out)
        do {
            try build(tmp, into: out, force: force, extraFiles: extraFiles)
        } catch {
            // This rank's own failure (a signal is Interrupt's): leave no half-written folder behind.
            Interrupt.guarding(nil) { try? Interrupt.removeTree(tmp) }
            throw error
        }
    }

    func build(_ tmp: String, into out: String, force: Bool, extraFiles: [String: Data]) throws {
        let world = pipeline.world
        let stages = pipeline.placement.stages
        let writers = (0..<stages).filter { !tensors(ofStage: $0).isEmpty }
        let shardName = { (k: Int) in String(format: "model-%05d-of-%05d.safetensors", k + 1, writers.count) }
        // Each step is agreed on (Communicator.agree) instead of ending at a barrier: a rank whose write fails
        // reports it once and every rank ends with exit code 1, none left waiting and none killed.
        // Every rank removes tmp if stopped from here on: rank 0 builds it, the others write shards into it.
        try world.agree {
            try Interrupt.guarding(tmp) {
                guard world.rank == 0 else { return }
                try Interrupt.removeTree(tmp)
                try namingFile(tmp, "cannot create") {
                    try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
                }
            }
        }
        let me = pipeline.me
        try world.agree {
            guard me.replica == 0, let k = writers.firstIndex(of: me.stage) else { return }
            let params = pipeline.stage.params
            let entries = tensors(ofStage: me.stage).map { spec, name in
                SafeTensorsEntry(name: name, dtype: dtype, shape: spec.shape) { $0.update(from: params.value(spec), count: spec.count) }
            }
            try SafeTensorsWriter.write(entries, to: tmp + "/" + shardName(k))
        }
        try world.agree {
            guard world.rank == 0 else { return }
            try finish(tmp, into: out, force: force, extraFiles: extraFiles, shards: writers.enumerated().map { ($1, shardName($0)) })
        }
        Interrupt.guarding(nil) {}  // renamed by rank 0: nothing to remove any more
    }

    /// Rank 0's part: the index, config, tokenizer and extra files, then the rename into place.
    func finish(_ tmp: String, into out: String, force: Bool, extraFiles: [String: Data], shards: [(stage: Int, file: String)]) throws {
        var weightMap: [String: String] = [:]
        var total = 0
        for (s, file) in shards {
            for (spec, name) in tensors(ofStage: s) {
                weightMap[name] = file
                total += spec.count * dtype.size
            }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try writeJSON(index, to: tmp + "/model.safetensors.index.json")
        try writeJSON(prunedConfig(), to: tmp + "/config.json")
        if FileManager.default.fileExists(atPath: source.path + "/config.json") {
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                         "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt"] {
                let from = source.path + "/" + name
                guard FileManager.default.fileExists(atPath: from) else { continue }
                try namingFile(tmp + "/" + name) { try FileManager.default.copyItem(atPath: from, toPath: tmp + "/" + name) }
            }
        } else if let gguf = source.source as? GGUFModel {
            // A GGUF carries its tokenizer in metadata: write it as tokenizer.json, as `convert` does.
            try writeJSON(try gguf.tokenizerJSON(), to: tmp + "/tokenizer.json")
            try writeJSON(try gguf.tokenizerConfigJSON(), to: tmp + "/tokenizer_config.json")
        }
        for (name, data) in extraFiles {
            try namingFile(tmp + "/" + name) { try data.write(to: URL(fileURLWithPath: tmp + "/" + name)) }
        }
        // Under the lock with nothing to remove: a signal now comes before the rename (tmp removed) or after.
        try Interrupt.guarding(nil) {
            if force && FileManager.default.fileExists(atPath: out) {
                try namingFile(out, "cannot remove") { try FileManager.default.removeItem(atPath: out) }
            }
            do { try FileManager.default.moveItem(atPath: tmp, toPath: out) }
            catch { throw GradMapError.runtime("\(out): cannot rename \(tmp) into place (\(GradMapError.reason(error)))") }
        }
    }

    /// config.json of the pruned model: the source's keys, num_hidden_layers and per-layer lists updated.
    public func prunedConfig() -> [String: Any] {
        var cfg = source.config.raw
        if cfg.isEmpty { cfg = source.config.huggingFaceJSON() }
        let original = source.config.layers
        cfg["num_hidden_layers"] = kept.count
        // Per-layer lists (one entry per decoder layer) keep the kept layers' entries.
        for key in ["layer_types", "no_rope_layers"] {
            if let list = cfg[key] as? [Any], list.count == original { cfg[key] = kept.map { list[$0] } }
        }
        if let w = cfg["max_window_layers"] as? Int, w > kept.count { cfg["max_window_layers"] = kept.count }
        let name: String
        switch dtype {
        case .bf16: name = "bfloat16"
        case .f16: name = "float16"
        default: name = "float32"
        }
        if cfg["dtype"] != nil || cfg["torch_dtype"] == nil { cfg["dtype"] = name }
        if cfg["torch_dtype"] != nil { cfg["torch_dtype"] = name }
        return cfg
    }
}

func writeJSON(_ object: Any, to path: String) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try namingFile(path) { try (data + Data("\n".utf8)).write(to: URL(fileURLWithPath: path)) }
}

/// Runs a file operation on `path`; a Foundation or POSIX failure becomes a runtime error naming the file
/// (exit code 1: the machine failed, not the input).
func namingFile(_ path: String, _ what: String = "cannot write", _ body: () throws -> Void) throws {
    do { try body() } catch let e as GradMapError { throw e } catch {
        throw GradMapError.runtime("\(path): \(what) (\(GradMapError.reason(error)))")
    }
}

extension ModelConfig {
    /// config.json for a model that came without one (a GGUF file).
    public func huggingFaceJSON() -> [String: Any] {
        var d: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": modelType, "vocab_size": vocabSize,
            "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kvHeads, "head_dim": headDim,
            "rms_norm_eps": rmsEps, "tie_word_embeddings": tieEmbeddings, "attention_bias": attentionOutputBias,
            "mlp_bias": mlpBias, "hidden_act": "silu", "max_position_embeddings": 8192, "dtype": "float32",
            "rope_theta": rope.theta,
        ]
        switch rope.kind {
        case .default: d["rope_scaling"] = NSNull()
        case .linear: d["rope_scaling"] = ["rope_type": "linear", "factor": rope.factor]
        case .llama3:
            d["rope_scaling"] = [
                "rope_type": "llama3", "factor": rope.factor, "low_freq_factor": rope.lowFreqFactor,
                "high_freq_factor": rope.highFreqFactor, "original_max_position_embeddings": rope.originalMaxPositions,
            ]
        }
        return d
    }
}
