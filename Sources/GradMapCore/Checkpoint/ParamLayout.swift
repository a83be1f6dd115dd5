// The tensors of a LLaMA-family checkpoint, laid out from the config: Hugging Face names and shapes, each
// tensor's offset in a stage's one allocation, and which parts of the model a stage holds (ParameterSet, in
// Model/Parameters.swift, allocates this layout).

public struct ParamSpec: Sendable {
    /// Full checkpoint name, e.g. "model.layers.3.self_attn.q_proj.weight".
    public let name: String
    /// Name inside its layer ("self_attn.q_proj.weight"), or the full name for non-layer tensors.
    public let localName: String
    /// Original layer index, nil for embedding, final norm and lm_head.
    public let layer: Int?
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// A weight matrix of θ_l (q, k, v, o, gate, up, down) as the pruning metrics define it.
    public var isMatrix: Bool { shape.count == 2 && layer != nil }
}

/// Which parts of the model a stage holds.
public struct StagePart: Sendable, Equatable {
    public var layers: Range<Int>
    public var embedding: Bool
    public var head: Bool
    public init(layers: Range<Int>, embedding: Bool, head: Bool) {
        self.layers = layers; self.embedding = embedding; self.head = head
    }
    public static func whole(_ c: ModelConfig) -> StagePart { StagePart(layers: 0..<c.layers, embedding: true, head: true) }
}

public enum ParamLayout {
    /// (local name, shape) of every tensor of one decoder layer, in checkpoint order.
    public static func layerTensors(_ c: ModelConfig) -> [(String, [Int])] {
        let h = c.hidden, i = c.intermediate, q = c.qDim, kv = c.kvDim
        var t: [(String, [Int])] = [("input_layernorm.weight", [h])]
        for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            t.append(("self_attn.\(name).weight", [rows, h]))
            if c.qkvBias { t.append(("self_attn.\(name).bias", [rows])) }
        }
        t.append(("self_attn.o_proj.weight", [h, q]))
        if c.attentionOutputBias { t.append(("self_attn.o_proj.bias", [h])) }
        t.append(("post_attention_layernorm.weight", [h]))
        for (name, shape) in [("gate_proj", [i, h]), ("up_proj", [i, h]), ("down_proj", [h, i])] {
            t.append(("mlp.\(name).weight", shape))
            if c.mlpBias { t.append(("mlp.\(name).bias", [shape[0]])) }
        }
        return t
    }

    public static func specs(_ c: ModelConfig, part: StagePart) -> [ParamSpec] {
        var specs: [ParamSpec] = []
        var offset = 0
        func add(_ name: String, _ local: String, _ layer: Int?, _ shape: [Int]) {
            let s = ParamSpec(name: name, localName: local, layer: layer, shape: shape, offset: offset)
            offset += s.count
            specs.append(s)
        }
        if part.embedding || (part.head && c.tieEmbeddings) {
            add("model.embed_tokens.weight", "model.embed_tokens.weight", nil, [c.vocabSize, c.hidden])
        }
        let perLayer = layerTensors(c)
        for l in part.layers {
            for (local, shape) in perLayer { add("model.layers.\(l).\(local)", local, l, shape) }
        }
        if part.head {
            add("model.norm.weight", "model.norm.weight", nil, [c.hidden])
            if !c.tieEmbeddings { add("lm_head.weight", "lm_head.weight", nil, [c.vocabSize, c.hidden]) }
        }
        return specs
    }

    /// Every tensor name of the full model: what a checkpoint must hold, and nothing else.
    public static func allNames(_ c: ModelConfig) -> Set<String> {
        Set(specs(c, part: .whole(c)).map(\.name))
    }
}
