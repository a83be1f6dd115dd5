// A checkpoint described for people: architecture, sizes, bytes per layer as stored and as float32.
import GradMapFormats
import GradMapSupport

public struct ModelSummary: Sendable {
    public let config: ModelConfig
    /// The dtype a config.json declares, or that of a checkpoint's first q_proj (F32 when it is quantised).
    public let storage: DType
    /// Per Hugging Face tensor name, the bytes it takes in the file (a quantised GGUF tensor: its blocks); nil for
    /// a config alone, whose tensors are all `storage`.
    public let tensorBytes: [String: Int]?
    /// Storage type name → number of tensors stored so ("Q4_K" → 169), in first-seen order of the layout.
    public let storedTypes: [(String, Int)]
    /// The storage type name of layer 0's q_proj ("BF16", "Q4_K").
    public let storageName: String

    /// A model known by its config alone: every tensor stored as `storage`.
    public init(config: ModelConfig, storage: DType) {
        self.config = config
        self.storage = storage
        tensorBytes = nil
        storedTypes = [(storage.rawValue, ParamLayout.specs(config, part: .whole(config)).count)]
        storageName = storage.rawValue
    }

    /// A checkpoint on disk: each tensor's bytes and type as its file has them.
    public init(checkpoint: Checkpoint) throws {
        config = checkpoint.config
        storage = checkpoint.storageDType()
        var bytes: [String: Int] = [:]
        var types: [(String, Int)] = []
        for s in ParamLayout.specs(config, part: .whole(config)) {
            bytes[s.name] = try checkpoint.source.storedBytes(s.name)
            let t = try checkpoint.source.tensorInfo(s.name).dtype
            if let i = types.firstIndex(where: { $0.0 == t }) { types[i].1 += 1 } else { types.append((t, 1)) }
        }
        tensorBytes = bytes
        storedTypes = types
        storageName = try checkpoint.source.tensorInfo("model.layers.0.self_attn.q_proj.weight").dtype
    }

    public var layerParameters: Int { ParamLayout.layerTensors(config).reduce(0) { $0 + $1.1.reduce(1, *) } }
    public var embeddingParameters: Int { config.vocabSize * config.hidden }
    public var headParameters: Int { config.hidden + (config.tieEmbeddings ? 0 : config.vocabSize * config.hidden) }
    public var totalParameters: Int { embeddingParameters + config.layers * layerParameters + headParameters }

    /// Stored bytes of the tensors a stage part holds (a tied embedding counted once per part that reads it).
    public func storedBytes(_ part: StagePart) -> Int {
        let specs = ParamLayout.specs(config, part: part)
        guard let tensorBytes else { return specs.reduce(0) { $0 + $1.count } * storage.size }
        return specs.reduce(0) { $0 + tensorBytes[$1.name]! }
    }
    public var totalStoredBytes: Int { storedBytes(.whole(config)) }
    /// Layer 0's stored bytes (quantised layers may differ by a few tensors' types: Q4_K_M mixes Q4_K and Q6_K).
    public var layerStoredBytes: Int { storedBytes(StagePart(layers: 0..<1, embedding: false, head: false)) }

    public var text: String {
        let c = config
        func mib(_ bytes: Int) -> String {
            let s = Double(bytes) / 1_048_576
            return s < 10 ? String(format: "%.2f MiB", s) : String(format: "%.1f MiB", s)
        }
        var lines: [String] = []
        lines.append("architecture     \(c.modelType) (LLaMA family)")
        lines.append("layers           \(c.layers)")
        lines.append("hidden           \(c.hidden), intermediate \(c.intermediate), vocab \(c.vocabSize)")
        lines.append("attention        \(c.heads) heads, \(c.kvHeads) kv heads, head_dim \(c.headDim)")
        lines.append("rope             \(c.rope.kind.rawValue), theta \(c.rope.theta)")
        lines.append("tied embeddings  \(c.tieEmbeddings)")
        lines.append("biases           qkv \(c.qkvBias), o \(c.attentionOutputBias), mlp \(c.mlpBias)")
        lines.append("parameters       \(totalParameters) (\(String(format: "%.1f", Double(totalParameters) / 1e6)) M)")
        lines.append("stored types     " + storedTypes.map { "\($0.0) ×\($0.1)" }.joined(separator: ", "))
        lines.append("stored           \(mib(totalStoredBytes)) (\(totalStoredBytes) bytes), \(mib(totalParameters * 4)) as float32")
        lines.append("per layer        \(layerParameters) parameters, \(mib(layerStoredBytes)) stored (layer 0), \(mib(layerParameters * 4)) as float32")
        lines.append("embedding        \(mib(storedBytes(StagePart(layers: 0..<0, embedding: true, head: false)))) stored, \(mib(embeddingParameters * 4)) as float32")
        return lines.joined(separator: "\n")
    }

    public var json: JSONValue {
        .object([
            ("model_type", .string(config.modelType)), ("layers", .int(config.layers)),
            ("hidden_size", .int(config.hidden)), ("intermediate_size", .int(config.intermediate)),
            ("vocab_size", .int(config.vocabSize)), ("heads", .int(config.heads)), ("kv_heads", .int(config.kvHeads)),
            ("head_dim", .int(config.headDim)), ("tie_word_embeddings", .bool(config.tieEmbeddings)),
            ("parameters", .int(totalParameters)), ("layer_parameters", .int(layerParameters)),
            ("stored_dtype", .string(storageName)),
            ("stored_types", .object(storedTypes.map { ($0.0, .int($0.1)) })),
            ("stored_bytes", .int(totalStoredBytes)),
            ("bytes_per_layer", .int(layerStoredBytes)),
            ("bytes_per_layer_f32", .int(layerParameters * 4)),
        ])
    }
}
