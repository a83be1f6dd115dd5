// config.json of a LLaMA-family checkpoint (llama, mistral, qwen2), read strictly: a missing or wrong field is
// an error naming the file and the key. The raw object is kept so that unknown keys survive a round trip.
import Foundation
import GradMapSupport

public struct RopeConfig: Sendable, Equatable {
    public enum Kind: String, Sendable { case `default`, linear, llama3 }
    public var kind: Kind = .default
    public var theta = HFConfig.defaultRopeTheta
    public var factor: Double = 1
    public var lowFreqFactor: Double = 1
    public var highFreqFactor: Double = 4
    public var originalMaxPositions: Double = 8192
    /// Where the parameters were read from: legacy `rope_theta`/`rope_scaling` or transformers-5 `rope_parameters`.
    public var fromRopeParameters = false

    /// inv_freq[hd/2] with the configured scaling, rounded to Float as transformers computes it in float32.
    public func inverseFrequencies(headDim hd: Int) -> [Double] {
        var inv = (0..<(hd / 2)).map { i in Double(Float(1.0 / pow(theta, Double(2 * i) / Double(hd)))) }
        switch kind {
        case .default: break
        case .linear: inv = inv.map { Double(Float($0 / factor)) }
        case .llama3:
            let lowWavelen = originalMaxPositions / lowFreqFactor
            let highWavelen = originalMaxPositions / highFreqFactor
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return Double(Float(f / factor)) }
                let smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
                return Double(Float((1 - smooth) * f / factor + smooth * f))
            }
        }
        return inv
    }
}

public struct ModelConfig: Sendable {
    public var modelType: String
    public var vocabSize: Int
    public var hidden: Int
    public var intermediate: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsEps: Double
    public var tieEmbeddings: Bool
    /// q, k, v (and o when `attentionOutputBias`) carry biases.
    public var qkvBias: Bool
    public var attentionOutputBias: Bool
    public var mlpBias: Bool
    public var rope: RopeConfig
    /// The parsed config.json, with every key as read.
    public nonisolated(unsafe) var raw: [String: Any]

    public static let supportedTypes = ["llama", "mistral", "qwen2"]
    /// Largest width (hidden, intermediate, vocabulary, heads × head_dim) and layer count accepted: far above
    /// any real model, and low enough that every tensor and parameter count fits an Int with room to spare.
    public static let maxDimension = 1 << 21
    public static let maxLayers = 1 << 12

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public init(
        modelType: String, vocabSize: Int, hidden: Int, intermediate: Int, layers: Int, heads: Int,
        kvHeads: Int, headDim: Int, rmsEps: Double, tieEmbeddings: Bool, qkvBias: Bool,
        attentionOutputBias: Bool, mlpBias: Bool, rope: RopeConfig, raw: [String: Any] = [:]
    ) {
        self.modelType = modelType; self.vocabSize = vocabSize; self.hidden = hidden
        self.intermediate = intermediate; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.rmsEps = rmsEps; self.tieEmbeddings = tieEmbeddings
        self.qkvBias = qkvBias; self.attentionOutputBias = attentionOutputBias; self.mlpBias = mlpBias
        self.rope = rope; self.raw = raw
    }

    public static func load(path: String) throws -> ModelConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw bad("\(path): file not found (expected a Hugging Face config.json)")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw bad("\(path): not a JSON object")
        }
        return try parse(dict, source: path)
    }

    public static func parse(_ d: [String: Any], source: String) throws -> ModelConfig {
        typealias Key = HFConfig.Key
        func number(_ key: Key) throws -> Double? {
            guard let v = d[key.rawValue], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else {
                throw bad("\(source): \(key.rawValue) must be a number, got \(shown(v))")
            }
            return n.doubleValue
        }
        func int(_ key: Key, limit: Int = maxDimension) throws -> Int? {
            guard let x = try number(key) else { return nil }
            let name = key.rawValue
            guard x.isFinite, x == x.rounded(), x > 0 else {
                throw bad("\(source): \(name) must be a positive integer, got \(shown(d[name]!))")
            }
            guard x <= Double(limit) else { throw bad("\(source): \(name) \(shown(d[name]!)) is larger than the limit of \(limit)") }
            return Int(x)
        }
        func positive(_ key: Key, _ value: Double) throws -> Double {
            guard value.isFinite, value > 0 else {
                throw bad("\(source): \(key.rawValue) must be a positive number, got \(shown(value))")
            }
            return value
        }
        func required(_ key: Key, limit: Int = maxDimension) throws -> Int {
            guard let v = try int(key, limit: limit) else { throw bad("\(source): missing \(key.rawValue)") }
            return v
        }
        func flag(_ key: Key) throws -> Bool {
            guard let v = d[key.rawValue], !(v is NSNull) else { return false }
            guard let b = v as? Bool else { throw bad("\(source): \(key.rawValue) must be true or false, got \(shown(v))") }
            return b
        }
        guard let type = d[Key.modelType.rawValue] as? String else { throw bad("\(source): missing \(Key.modelType.rawValue)") }
        guard supportedTypes.contains(type) else {
            throw bad("\(source): model_type '\(shown(type))' is not supported; expected one of \(supportedTypes.joined(separator: ", "))")
        }
        let hidden = try required(.hiddenSize)
        let heads = try required(.numAttentionHeads)
        let kvHeads = try int(.numKeyValueHeads) ?? heads
        guard heads % kvHeads == 0 else {
            throw bad("\(source): num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
        }
        let headDimValue = d[Key.headDim.rawValue]
        if headDimValue == nil || headDimValue is NSNull, hidden % heads != 0 {
            throw bad("\(source): hidden_size \(hidden) is not a multiple of num_attention_heads \(heads) (and there is no head_dim)")
        }
        let headDim = try int(.headDim) ?? hidden / heads
        guard headDim % 2 == 0 else { throw bad("\(source): head_dim \(headDim) must be even for RoPE") }
        guard heads * headDim <= maxDimension else {
            throw bad("\(source): num_attention_heads \(heads) × head_dim \(headDim) is larger than the limit of \(maxDimension)")
        }
        let attentionBias = try flag(.attentionBias)
        let rope = try parseRope(d, source: source)
        let vocab = try required(.vocabSize)
        let intermediate = try required(.intermediateSize)
        let layers = try required(.numHiddenLayers, limit: maxLayers)
        let eps = try positive(.rmsNormEps, try number(.rmsNormEps) ?? HFConfig.defaultRmsNormEps)
        let tied = try flag(.tieWordEmbeddings)
        return ModelConfig(
            modelType: type, vocabSize: vocab, hidden: hidden, intermediate: intermediate, layers: layers,
            heads: heads, kvHeads: kvHeads, headDim: headDim, rmsEps: eps, tieEmbeddings: tied,
            qkvBias: type == "qwen2" || attentionBias, attentionOutputBias: type != "qwen2" && attentionBias,
            mlpBias: try flag(.mlpBias), rope: rope, raw: d)
    }

    static func parseRope(_ d: [String: Any], source: String) throws -> RopeConfig {
        typealias Scaling = HFRopeScaling.CodingKeys
        var rope = RopeConfig()
        var scaling: [String: Any]? = nil
        if let params = d[HFConfig.Key.ropeParameters.rawValue] as? [String: Any] {
            rope.fromRopeParameters = true
            scaling = params
            if let theta = params[HFRopeScaling.CodingKeys.ropeTheta.rawValue] as? NSNumber { rope.theta = theta.doubleValue }
        } else {
            if let theta = d[HFConfig.Key.ropeTheta.rawValue] as? NSNumber { rope.theta = theta.doubleValue }
            scaling = d[HFConfig.Key.ropeScaling.rawValue] as? [String: Any]
        }
        guard rope.theta.isFinite, rope.theta > 0 else { throw bad("\(source): rope_theta must be a positive number, got \(rope.theta)") }
        guard let s = scaling else { return rope }
        let key = (rope.fromRopeParameters ? HFConfig.Key.ropeParameters : .ropeScaling).rawValue
        let type = (s[Scaling.ropeType.rawValue] as? String) ?? (s[Scaling.type.rawValue] as? String) ?? "default"
        guard let kind = RopeConfig.Kind(rawValue: type) else {
            throw bad("\(source): \(key) rope_type '\(shown(type))' is not supported; expected default, linear or llama3")
        }
        rope.kind = kind
        func num(_ key: Scaling) throws -> Double {
            let k = key.rawValue
            guard let n = s[k] as? NSNumber else { throw bad("\(source): \(key) of type \(shown(type)) needs \(k)") }
            guard n.doubleValue.isFinite, n.doubleValue > 0 else {
                throw bad("\(source): \(key) \(k) must be a positive number, got \(n)")
            }
            return n.doubleValue
        }
        switch kind {
        case .default: break
        case .linear: rope.factor = try num(.factor)
        case .llama3:
            rope.factor = try num(.factor)
            rope.lowFreqFactor = try num(.lowFreqFactor)
            rope.highFreqFactor = try num(.highFreqFactor)
            rope.originalMaxPositions = try num(.originalMaxPositionEmbeddings)
        }
        return rope
    }
}
