// Writes the pruned model as a Hugging Face checkpoint that transformers loads unchanged: layers renumbered
// 0..L-K-1, config.json with num_hidden_layers (and per-layer lists such as layer_types) updated and every
// other key kept, the source dtype kept (BF16/F16 rounded to nearest even), no lm_head when tied. Replica 0's
// rank of each stage writes one shard with its tensors; rank 0 writes the index, config and tokenizer files.
// Everything goes to a temporary folder beside DIR, renamed at the end: a failed run leaves no partial DIR.
// Nor a temporary folder: a rank that fails or gets SIGTERM/SIGINT (Interrupt) removes it, and one left by a
// SIGKILLed writer is removed when the next prune to the same DIR starts.
import Foundation
import GradMapDistributed
import GradMapFormats
import GradMapRuntime

/// Float only, like Pruner: the pipeline it writes from is the engine's float32 one.
public struct PrunedWriter {
    public let source: Checkpoint
    /// Original indices of the kept layers.
    public let kept: [Int]
    public let dtype: DType
    let world: Communicator
    let placement: Placement
    let me: RankPlacement
    /// This rank's tensors as they are now (the stage's values, compensation folded in).
    let values: (ParamSpec) -> UnsafePointer<Float>

    public init(pipeline: Pipeline<Float>, source: Checkpoint, kept: Set<Int>, dtype: DType) {
        let params = pipeline.stage.params
        self.init(world: pipeline.world, placement: pipeline.placement, source: source, kept: kept, dtype: dtype) {
            UnsafePointer(params.value($0))
        }
    }

    public init(
        world: Communicator, placement: Placement, source: Checkpoint, kept: Set<Int>, dtype: DType,
        values: @escaping (ParamSpec) -> UnsafePointer<Float>
    ) {
        self.source = source
        self.kept = kept.sorted()
        self.dtype = dtype
        self.world = world
        self.placement = placement
        me = placement.placement(rank: world.rank)
        self.values = values
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
        let p = placement.placement(rank: stage)
        return ParamLayout.specs(source.config, part: p.part).compactMap { s in
            if s.name == "model.embed_tokens.weight" && !p.part.embedding { return nil }
            if let l = s.layer, !kept.contains(l) { return nil }
            return renamed(s.name).map { (s, $0) }
        }
    }

    /// This rank's shard: its kept tensors under their new names, stored as `dtype` when written.
    func shard() -> [SafeTensorsEntry] {
        tensors(ofStage: me.stage).map { spec, name in
            SafeTensorsEntry(name: name, dtype: dtype, shape: spec.shape) { [values] in $0.update(from: values(spec), count: spec.count) }
        }
    }

    /// The source dtype, kept; quantised GGUF weights are written as float32 (their exact dequantised values).
    public static func outputDType(_ source: Checkpoint) -> DType {
        let d = source.storageDType()
        return [.f32, .f16, .bf16].contains(d) ? d : .f32
    }

    /// Writes the checkpoint; `extraFiles` is called on rank 0 once the tensors are written, for files written
    /// beside them (the report).
    public func write(to out: String, force: Bool, extraFiles: () throws -> [String: Data] = { [:] }) throws {
        let folder = PartialFolder(out)
        do {
            try build(folder, force: force, extraFiles: extraFiles)
        } catch {
            folder.discard()
            throw error
        }
    }

    func build(_ folder: PartialFolder, force: Bool, extraFiles: () throws -> [String: Data]) throws {
        let writing = (0..<placement.stages).filter { !tensors(ofStage: $0).isEmpty }
        let shardName = { (k: Int) in String(format: "model-%05d-of-%05d.safetensors", k + 1, writing.count) }
        // Each step is agreed on (Communicator.agree) instead of ending at a barrier: a rank whose write fails
        // reports it once and every rank ends with exit code 1, none left waiting and none killed.
        // Every rank removes the folder if stopped from here on: rank 0 builds it, the others write shards into it.
        try world.agree { if world.rank == 0 { try folder.create() } else { folder.watch() } }
        try world.agree {
            guard me.replica == 0, let k = writing.firstIndex(of: me.stage) else { return }
            try folder.writeTensors(shard(), as: shardName(k))
        }
        try world.agree {
            guard world.rank == 0 else { return }
            var weightMap: [String: String] = [:]
            var total = 0
            for (k, s) in writing.enumerated() {
                for (spec, name) in tensors(ofStage: s) {
                    weightMap[name] = shardName(k)
                    total += spec.count * dtype.size
                }
            }
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try folder.write("model.safetensors.index.json", .data(try jsonFile(index)))
            try folder.write("config.json", .data(try jsonFile(try prunedConfig())))
            for (name, file) in try tokenizerFiles() { try folder.write(name, file) }
            for (name, data) in try extraFiles().sorted(by: { $0.key < $1.key }) { try folder.write(name, .data(data)) }
            try folder.commit(replacing: force)
        }
        folder.unwatch()  // renamed by rank 0: nothing to remove any more
    }

    /// The source's tokenizer (and generation) files: a folder's copied, a GGUF's rebuilt from its metadata as
    /// tokenizer.json and tokenizer_config.json, as `convert` does.
    func tokenizerFiles() throws -> [(String, FolderFile)] {
        if let gguf = source.gguf {
            return [("tokenizer.json", .data(try jsonFile(try gguf.tokenizerJSON()))),
                    ("tokenizer_config.json", .data(try jsonFile(try gguf.tokenizerConfigJSON())))]
        }
        let names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                     "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt"]
        return names.map { ($0, source.path + "/" + $0) }.filter { FileManager.default.fileExists(atPath: $0.1) }
            .map { ($0.0, .copy(of: $0.1)) }
    }

    /// config.json of the pruned model: the source's keys, num_hidden_layers and per-layer lists updated.
    public func prunedConfig() throws -> [String: Any] {
        typealias Key = HFConfig.Key
        var cfg = source.config.raw
        if cfg.isEmpty { cfg = try source.config.huggingFaceJSON() }
        let original = source.config.layers
        cfg[Key.numHiddenLayers.rawValue] = kept.count
        // Per-layer lists (one entry per decoder layer) keep the kept layers' entries.
        for key in [Key.layerTypes.rawValue, Key.noRopeLayers.rawValue] {
            if let list = cfg[key] as? [Any], list.count == original { cfg[key] = kept.map { list[$0] } }
        }
        let window = Key.maxWindowLayers.rawValue
        if let w = cfg[window] as? Int, w > kept.count { cfg[window] = kept.count }
        let name: String
        switch dtype {
        case .bf16: name = "bfloat16"
        case .f16: name = "float16"
        default: name = "float32"
        }
        let dtypeKey = Key.dtype.rawValue, torchKey = Key.torchDtype.rawValue
        if cfg[dtypeKey] != nil || cfg[torchKey] == nil { cfg[dtypeKey] = name }
        if cfg[torchKey] != nil { cfg[torchKey] = name }
        return cfg
    }
}

/// A JSON file as the pruned checkpoint's are written: sorted keys, indented, slashes as they are, a final newline.
func jsonFile(_ object: Any) throws -> Data {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return data + Data("\n".utf8)
}

func writeJSON(_ object: Any, to path: String) throws {
    let data = try jsonFile(object)
    try namingFile(path) { try data.write(to: URL(fileURLWithPath: path)) }
}

extension ModelConfig {
    /// config.json for a model that came without one (built in code).
    public var huggingFace: HFConfig {
        var hf = HFConfig()
        hf.architectures = ["LlamaForCausalLM"]; hf.modelType = modelType; hf.vocabSize = vocabSize
        hf.hiddenSize = hidden; hf.intermediateSize = intermediate; hf.numHiddenLayers = layers
        hf.numAttentionHeads = heads; hf.numKeyValueHeads = kvHeads; hf.headDim = headDim
        hf.rmsNormEps = rmsEps; hf.tieWordEmbeddings = tieEmbeddings; hf.attentionBias = attentionOutputBias
        hf.mlpBias = mlpBias; hf.hiddenAct = "silu"; hf.maxPositionEmbeddings = 8192; hf.dtype = "float32"
        hf.ropeTheta = rope.theta
        switch rope.kind {
        case .default: hf.ropeScaling = .null
        case .linear: hf.ropeScaling = .some(HFRopeScaling(ropeType: "linear", factor: rope.factor))
        case .llama3:
            hf.ropeScaling = .some(HFRopeScaling(
                ropeType: "llama3", factor: rope.factor, lowFreqFactor: rope.lowFreqFactor,
                highFreqFactor: rope.highFreqFactor, originalMaxPositionEmbeddings: rope.originalMaxPositions))
        }
        return hf
    }

    /// `huggingFace` as a parsed JSON object.
    public func huggingFaceJSON() throws -> [String: Any] {
        try huggingFace.jsonObject(source: "config of the \(modelType) model")
    }
}
