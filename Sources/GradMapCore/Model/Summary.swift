// A checkpoint described for people: architecture, sizes, bytes per layer.

public struct ModelSummary: Sendable {
    public let config: ModelConfig
    public let storage: DType

    public init(config: ModelConfig, storage: DType) {
        self.config = config
        self.storage = storage
    }

    public var layerParameters: Int { ParamLayout.layerTensors(config).reduce(0) { $0 + $1.1.reduce(1, *) } }
    public var embeddingParameters: Int { config.vocabSize * config.hidden }
    public var headParameters: Int { config.hidden + (config.tieEmbeddings ? 0 : config.vocabSize * config.hidden) }
    public var totalParameters: Int { embeddingParameters + config.layers * layerParameters + headParameters }

    public var text: String {
        let c = config
        func mib(_ floats: Int, _ bytes: Int) -> String {
            let s = Double(floats * bytes) / 1_048_576
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
        lines.append("stored dtype     \(storage.rawValue)")
        lines.append("per layer        \(layerParameters) parameters, \(mib(layerParameters, storage.size)) stored, \(mib(layerParameters, 4)) as float32")
        lines.append("embedding        \(mib(embeddingParameters, storage.size)) stored")
        return lines.joined(separator: "\n")
    }

    public var json: JSONValue {
        .object([
            ("model_type", .string(config.modelType)), ("layers", .int(config.layers)),
            ("hidden_size", .int(config.hidden)), ("intermediate_size", .int(config.intermediate)),
            ("vocab_size", .int(config.vocabSize)), ("heads", .int(config.heads)), ("kv_heads", .int(config.kvHeads)),
            ("head_dim", .int(config.headDim)), ("tie_word_embeddings", .bool(config.tieEmbeddings)),
            ("parameters", .int(totalParameters)), ("layer_parameters", .int(layerParameters)),
            ("stored_dtype", .string(storage.rawValue)),
            ("bytes_per_layer", .int(layerParameters * storage.size)),
            ("bytes_per_layer_f32", .int(layerParameters * 4)),
        ])
    }
}
