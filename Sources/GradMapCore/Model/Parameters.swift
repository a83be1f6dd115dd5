// The parameters a stage holds, in one allocation (and their gradients in a second of the same layout), laid
// out from the config. Names and shapes are Hugging Face's; views give each layer's tensors as pointers.

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

/// Pointers to one layer's tensors inside a parameter (or gradient) allocation.
struct LayerView<F: Real> {
    var ln1, wq, wk, wv, wo, ln2, wg, wu, wd: UnsafeMutablePointer<F>
    var bq, bk, bv, bo, bg, bu, bd: UnsafeMutablePointer<F>?
}

public final class ParameterSet<F: Real>: @unchecked Sendable {
    public let config: ModelConfig
    public let part: StagePart
    public let specs: [ParamSpec]
    public let values: Buffer<F>
    /// Gradients, same layout as values; allocated only when a backward pass is wanted.
    public private(set) var grads: Buffer<F>?
    private let index: [String: Int]

    public init(config: ModelConfig, part: StagePart) {
        self.config = config
        self.part = part
        specs = ParamLayout.specs(config, part: part)
        values = Buffer(count: specs.last.map { $0.offset + $0.count } ?? 0)
        index = Dictionary(uniqueKeysWithValues: specs.enumerated().map { ($1.name, $0) })
    }

    public var count: Int { values.count }

    public func spec(_ name: String) -> ParamSpec? { index[name].map { specs[$0] } }

    public func value(_ name: String) -> UnsafeMutablePointer<F> { values.pointer + specs[index[name]!].offset }
    public func grad(_ name: String) -> UnsafeMutablePointer<F> { grads!.pointer + specs[index[name]!].offset }

    public func enableGradients() {
        if grads == nil { grads = Buffer(count: values.count) }
    }

    /// Fills every tensor from the checkpoint, asking for each by name and shape.
    public func load(from ckpt: Checkpoint) throws {
        for s in specs { try ckpt.load(s.name, shape: s.shape, into: values.pointer + s.offset) }
    }

    func layerView(_ l: Int, base: UnsafeMutablePointer<F>) -> LayerView<F> {
        func p(_ local: String) -> UnsafeMutablePointer<F> { base + specs[index["model.layers.\(l).\(local)"]!].offset }
        func o(_ local: String) -> UnsafeMutablePointer<F>? {
            index["model.layers.\(l).\(local)"].map { base + specs[$0].offset }
        }
        return LayerView(
            ln1: p("input_layernorm.weight"), wq: p("self_attn.q_proj.weight"), wk: p("self_attn.k_proj.weight"),
            wv: p("self_attn.v_proj.weight"), wo: p("self_attn.o_proj.weight"),
            ln2: p("post_attention_layernorm.weight"), wg: p("mlp.gate_proj.weight"), wu: p("mlp.up_proj.weight"),
            wd: p("mlp.down_proj.weight"),
            bq: o("self_attn.q_proj.bias"), bk: o("self_attn.k_proj.bias"), bv: o("self_attn.v_proj.bias"),
            bo: o("self_attn.o_proj.bias"), bg: o("mlp.gate_proj.bias"), bu: o("mlp.up_proj.bias"),
            bd: o("mlp.down_proj.bias"))
    }
}
