// GGUF tensors as a Hugging Face checkpoint: the dequantisation of a tensor's blocks and GGUFModel, which
// presents a llama or qwen2 GGUF with HF tensor names, q/k rows in HF order and a ModelConfig (GGUF.swift).
import Foundation
import GradMapRuntime
import GradMapSupport

/// Dequantises `count` elements (whole blocks) of a supported ggml type into dst. Values are computed in Float
/// exactly as ggml and gguf-py do (d·q, d·(q − 8), d·q + m with d, m widened from f16), then widened to F.
/// Q5_0, Q5_1 and the k-quants are in GGMLQuants.swift.
func dequantize<F: Real>(_ src: UnsafeRawPointer, type: GGMLType, count: Int, into dst: UnsafeMutablePointer<F>) {
    precondition(count % type.blockSize == 0, "dequantize: \(count) elements are not whole \(type.name) blocks")
    let blocks = count / type.blockSize
    switch type.id {
    case 0: widen(src, dtype: .f32, count: count, into: dst)
    case 1: widen(src, dtype: .f16, count: count, into: dst)
    case 30: widen(src, dtype: .bf16, count: count, into: dst)
    case 8:  // Q8_0: f16 d, 32 × i8
        for b in 0..<count / 32 {
            let block = src + 34 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<32 {
                out[j] = F(Double(d * Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self)))))
            }
        }
    case 2:  // Q4_0: f16 d, 16 bytes; byte j = element j (low nibble) and j + 16 (high nibble)
        for b in 0..<count / 32 {
            let block = src + 18 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<16 {
                let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                out[j] = F(Double(d * Float(Int(q & 0x0f) - 8)))
                out[j + 16] = F(Double(d * Float(Int(q >> 4) - 8)))
            }
        }
    case 3:  // Q4_1: f16 d, f16 m, 16 bytes
        for b in 0..<count / 32 {
            let block = src + 20 * b
            let d = halfToFloat(block.loadUnaligned(as: UInt16.self).littleEndian)
            let m = halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self).littleEndian)
            let out = dst + 32 * b
            for j in 0..<16 {
                let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                let lo = d * Float(q & 0x0f), hi = d * Float(q >> 4)
                out[j] = F(Double(lo + m))
                out[j + 16] = F(Double(hi + m))
            }
        }
    case 6: dequantizeQ5_0(src, blocks: blocks, into: dst)
    case 7: dequantizeQ5_1(src, blocks: blocks, into: dst)
    case 10: dequantizeQ2_K(src, blocks: blocks, into: dst)
    case 11: dequantizeQ3_K(src, blocks: blocks, into: dst)
    case 12: dequantizeQ4_K(src, blocks: blocks, into: dst)
    case 13: dequantizeQ5_K(src, blocks: blocks, into: dst)
    case 14: dequantizeQ6_K(src, blocks: blocks, into: dst)
    case 15: dequantizeQ8_K(src, blocks: blocks, into: dst)
    default:
        preconditionFailure("dequantize: ggml type \(type.name) is not supported")
    }
}

/// A llama or qwen2 GGUF as a checkpoint: Hugging Face tensor names and shapes, q/k rows in HF order, and the config.
public final class GGUFModel: TensorSource, @unchecked Sendable {
    public let file: GGUFFile
    public let config: ModelConfig
    /// Hugging Face name → GGUF tensor; tensors with no HF counterpart keep their GGUF name (and are then
    /// reported as unexpected by Checkpoint.checkNoUnexpectedTensors).
    public let hfToGGUF: [String: String]
    public var path: String { file.path }

    /// general.architecture → the Hugging Face class; only llama's q/k rows are permuted in the file.
    public static let supportedArchitectures = ["llama", "qwen2"]
    static let hfArchitecture = ["llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"]

    public init(path: String) throws {
        file = try GGUFFile(path: path)
        var map: [String: String] = [:]
        for t in file.tensorList {
            map[GGUFModel.hfName(t.name) ?? t.name] = t.name
        }
        hfToGGUF = map
        config = try GGUFModel.buildConfig(file)
    }

    /// llama.cpp's tensor name → Hugging Face's (nil when there is none).
    public static func hfName(_ gguf: String) -> String? {
        let top = [
            "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight",
        ]
        if let n = top[gguf] { return n }
        let parts = gguf.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1],
            parts[3] == "weight" || parts[3] == "bias"
        else { return nil }
        let local = [
            "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        ]
        guard let l = local[String(parts[2])] else { return nil }
        return "model.layers.\(layer).\(l).\(parts[3])"
    }

    public var tensorNames: [String] { Array(hfToGGUF.keys) }

    public func file(holding name: String) -> String { path }

    func gguf(_ name: String) throws -> GGUFTensorInfo {
        guard let g = hfToGGUF[name], let t = file.tensors[g] else { throw bad("\(path): missing tensor \(shown(name))") }
        return t
    }

    public func tensorInfo(_ name: String) throws -> (shape: [Int], dtype: String) {
        let t = try gguf(name)
        return (t.shape, t.type.name)
    }

    public func storedBytes(_ name: String) throws -> Int { try gguf(name).byteCount }

    /// Heads whose rows llama.cpp permuted (q: attention heads, k: key/value heads), nil for other tensors and
    /// for qwen2 (convert_hf_to_gguf.py permutes only for llama's interleaved RoPE; transformers' GGUF loader
    /// likewise un-permutes only llama).
    func permutedHeads(_ name: String) -> Int? {
        guard config.modelType == "llama" else { return nil }
        if name.hasSuffix("self_attn.q_proj.weight") || name.hasSuffix("self_attn.q_proj.bias") { return config.heads }
        if name.hasSuffix("self_attn.k_proj.weight") || name.hasSuffix("self_attn.k_proj.bias") { return config.kvHeads }
        return nil
    }

    public func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws {
        let t = try gguf(name)
        guard t.shape == shape else {
            throw bad("\(path): tensor \(shown(name)) (\(shown(t.name))) has wrong shape; expected \(shape), got \(t.shape)")
        }
        guard t.type.canDequantize else {
            throw bad("\(path): tensor \(shown(t.name)) (\(shown(name))) has ggml type \(t.type.id) (\(t.type.name)), which cannot be dequantized; expected one of \(GGMLType.dequantizableNames)")
        }
        let src = file.data(t)
        if let n = permutedHeads(name) {
            // llama.cpp's row g = h·hd + 2j + a holds HF row h·hd + a·hd/2 + j (view [n, hd/2, 2, in], swap 1 and 2).
            // The shape was checked above, so rows = n · hd with hd even (ModelConfig checks head_dim).
            let rows = t.shape[0], cols = t.count / rows
            guard cols % t.type.blockSize == 0 else {
                throw bad("\(path): tensor \(shown(t.name)) (\(shown(name))): \(t.type.name) rows of \(cols) elements cannot be permuted back; expected whole blocks of \(t.type.blockSize)")
            }
            let rowBytes = cols / t.type.blockSize * t.type.blockBytes
            let hd = rows / n, half = hd / 2
            for g in 0..<rows {
                let h = g / hd, r = g % hd
                let hf = h * hd + (r % 2) * half + r / 2
                dequantize(src + g * rowBytes, type: t.type, count: cols, into: dst + hf * cols)
            }
        } else {
            dequantize(src, type: t.type, count: t.count, into: dst)
        }
        file.release(t)
    }

    /// The Hugging Face config.json object a llama or qwen2 GGUF stands for, checked against the tensor shapes, and
    /// the ModelConfig parsed from it (so the same validation applies as to a folder's config.json).
    static func buildConfig(_ f: GGUFFile) throws -> ModelConfig {
        let path = f.path
        guard let arch = try f.string("general.architecture") else { throw bad("\(path): missing metadata general.architecture") }
        guard supportedArchitectures.contains(arch) else {
            throw bad("\(path): general.architecture '\(shown(arch))' is not supported; expected \(supportedArchitectures.joined(separator: ", "))")
        }
        func required(_ key: String) throws -> Int {
            guard let v = try f.int(arch + "." + key) else { throw bad("\(path): missing metadata \(shown(arch)).\(shown(key))") }
            guard v > 0 else { throw bad("\(path): metadata \(shown(arch)).\(shown(key)) must be positive, got \(v)") }
            return v
        }
        let layers = try required("block_count")
        let hidden = try required("embedding_length")
        let intermediate = try required("feed_forward_length")
        let heads = try required("attention.head_count")
        let kvHeads = try f.int(arch + ".attention.head_count_kv") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw bad("\(path): metadata \(shown(arch)).attention.head_count \(heads) is not a multiple of \(shown(arch)).attention.head_count_kv \(kvHeads)")
        }
        let headDim = try f.int(arch + ".attention.key_length") ?? hidden / heads
        if let rotary = try f.int(arch + ".rope.dimension_count"), rotary != headDim {
            throw bad("\(path): metadata \(shown(arch)).rope.dimension_count = \(rotary) disagrees with the head dimension \(headDim); partial RoPE is not supported")
        }
        guard let eps = try f.double(arch + ".attention.layer_norm_rms_epsilon") else {
            throw bad("\(path): missing metadata \(shown(arch)).attention.layer_norm_rms_epsilon")
        }
        let theta = try f.double(arch + ".rope.freq_base") ?? HFConfig.defaultRopeTheta
        guard let embd = f.tensors["token_embd.weight"] else { throw bad("\(path): missing tensor token_embd.weight") }
        guard embd.dims.count == 2 else {
            throw bad("\(path): tensor token_embd.weight must be a matrix, got shape \(embd.shape)")
        }
        let tokenCount = f.metadata["tokenizer.ggml.tokens"]?.array?.count
        let vocabKey = try f.int(arch + ".vocab_size")
        let vocab = tokenCount ?? vocabKey ?? embd.dims[1]

        // Metadata against tensor shapes: each dimension with the key that sets it.
        func check(_ key: String, _ value: Int, _ t: GGUFTensorInfo, _ dim: Int) throws {
            guard t.shape[dim] == value else {
                throw bad("\(path): metadata \(shown(key)) = \(value) disagrees with tensor \(shown(t.name)) shape \(t.shape)")
            }
        }
        try check(arch + ".embedding_length", hidden, embd, 1)
        try check(tokenCount != nil ? "tokenizer.ggml.tokens (count)" : arch + ".vocab_size", vocab, embd, 0)
        if let v = vocabKey, tokenCount != nil { try check(arch + ".vocab_size", v, embd, 0) }
        for t in f.tensorList {
            let parts = t.name.split(separator: ".")
            if parts.count == 4, parts[0] == "blk", let l = Int(parts[1]), l >= layers {
                throw bad("\(path): metadata \(shown(arch)).block_count = \(layers) disagrees with tensor \(shown(t.name))")
            }
            guard parts.count == 4, parts[0] == "blk", parts[3] == "weight" else { continue }
            let hiddenKey = arch + ".embedding_length", ffKey = arch + ".feed_forward_length"
            switch parts[2] {
            case "attn_norm", "ffn_norm": try check(hiddenKey, hidden, t, 0)
            case "attn_q":
                try check(arch + ".attention.head_count × head dim \(headDim)", heads * headDim, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "attn_k", "attn_v":
                try check(arch + ".attention.head_count_kv × head dim \(headDim)", kvHeads * headDim, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "attn_output":
                try check(hiddenKey, hidden, t, 0)
                try check(arch + ".attention.head_count × head dim \(headDim)", heads * headDim, t, 1)
            case "ffn_gate", "ffn_up":
                try check(ffKey, intermediate, t, 0)
                try check(hiddenKey, hidden, t, 1)
            case "ffn_down":
                try check(hiddenKey, hidden, t, 0)
                try check(ffKey, intermediate, t, 1)
            default: break
            }
        }
        if let norm = f.tensors["output_norm.weight"] { try check(arch + ".embedding_length", hidden, norm, 0) }

        var ropeScaling = Nullable<HFRopeScaling>.null
        let scalingType = try f.string(arch + ".rope.scaling.type")
        let linearFactor = try f.double(arch + ".rope.scaling.factor") ?? (try f.double(arch + ".rope.scale_linear"))
        switch scalingType {
        case nil, "none":
            if scalingType == nil, let factor = linearFactor, factor != 1 {
                ropeScaling = .some(HFRopeScaling(ropeType: "linear", factor: factor))
            }
        case "linear":
            guard let factor = linearFactor else { throw bad("\(path): metadata \(shown(arch)).rope.scaling.type linear needs \(shown(arch)).rope.scaling.factor") }
            ropeScaling = .some(HFRopeScaling(ropeType: "linear", factor: factor))
        case let other?:
            throw bad("\(path): metadata \(shown(arch)).rope.scaling.type '\(shown(other))' is not supported; expected none or linear")
        }

        var hf = HFConfig()
        hf.modelType = arch; hf.architectures = [hfArchitecture[arch]!]; hf.vocabSize = vocab; hf.hiddenSize = hidden
        hf.intermediateSize = intermediate; hf.numHiddenLayers = layers; hf.numAttentionHeads = heads
        hf.numKeyValueHeads = kvHeads; hf.headDim = headDim; hf.rmsNormEps = eps; hf.ropeTheta = theta
        hf.ropeScaling = ropeScaling; hf.hiddenAct = "silu"
        // qwen2 always has q/k/v biases and no output bias (ModelConfig knows): its config has no attention_bias.
        hf.attentionBias = arch == "qwen2" ? nil : f.tensors["blk.0.attn_q.bias"] != nil; hf.mlpBias = f.tensors["blk.0.ffn_gate.bias"] != nil
        hf.maxPositionEmbeddings = try f.int(arch + ".context_length") ?? 2048
        hf.tieWordEmbeddings = f.tensors["output.weight"] == nil; hf.initializerRange = 0.02
        hf.useCache = true; hf.torchDtype = "float32"; hf.dtype = "float32"
        let tokenIDs: [(String, WritableKeyPath<HFConfig, Int?>)] = [
            ("bos_token_id", \.bosTokenId), ("eos_token_id", \.eosTokenId), ("padding_token_id", \.padTokenId),
        ]
        for (key, field) in tokenIDs {
            if let id = try f.int("tokenizer.ggml." + key) {
                guard id >= 0, id < vocab else {
                    throw bad("\(path): metadata tokenizer.ggml.\(key) = \(id) is outside the vocabulary of \(vocab)")
                }
                hf[keyPath: field] = id
            }
        }
        let raw = try hf.jsonObject(source: path)
        return try ModelConfig.parse(raw, source: path)
    }
}
