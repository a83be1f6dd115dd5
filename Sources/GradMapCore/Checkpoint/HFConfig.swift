// The keys of a Hugging Face config.json that the engine reads or writes, under their HF names: ModelConfig
// parses a file's object by them, a GGUF's metadata and a model built in code are written as one, and the
// pruned config and inspect name their keys through it. Files are not read with JSONDecoder: the parser checks
// each key of the parsed object itself, so a wrong value gets one line naming the file and the key.
import Foundation
import GradMapSupport

public struct HFConfig: Codable, Sendable, Equatable {
    public var modelType: String?
    public var architectures: [String]?
    public var vocabSize: Int?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var rmsNormEps: Double?
    public var ropeTheta: Double?
    /// Legacy RoPE scaling; `.null` writes the key as null, as transformers does for a model without scaling.
    public var ropeScaling: Nullable<HFRopeScaling>?
    /// transformers 5: rope_theta and the scaling in one object (read, never written).
    public var ropeParameters: HFRopeScaling?
    public var hiddenAct: String?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var maxPositionEmbeddings: Int?
    public var tieWordEmbeddings: Bool?
    public var initializerRange: Double?
    public var useCache: Bool?
    public var torchDtype: String?
    public var dtype: String?
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?
    /// Per-layer keys (one entry per decoder layer, or a layer count) that pruning edits in the file's object.
    public var layerTypes: [String]?
    public var noRopeLayers: [Int]?
    public var maxWindowLayers: Int?

    public enum CodingKeys: String, CodingKey, Sendable {
        case modelType = "model_type", architectures, vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling", ropeParameters = "rope_parameters", hiddenAct = "hidden_act"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings", initializerRange = "initializer_range", useCache = "use_cache"
        case torchDtype = "torch_dtype", dtype, bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
        case padTokenId = "pad_token_id", layerTypes = "layer_types", noRopeLayers = "no_rope_layers"
        case maxWindowLayers = "max_window_layers"
    }
    public typealias Key = CodingKeys

    public init() {}

    /// Defaults of optional keys, as transformers' LlamaConfig has them.
    public static let defaultRmsNormEps = 1e-6
    public static let defaultRopeTheta = 10000.0
    /// The storage dtype inspect assumes when a config.json names none.
    public static let defaultDType = "bfloat16"

    /// The dtype a config.json declares: torch_dtype (transformers 4) before dtype (transformers 5).
    public static func declaredDType(_ object: [String: Any]) -> String {
        (object[Key.torchDtype.rawValue] as? String) ?? (object[Key.dtype.rawValue] as? String) ?? defaultDType
    }

    /// This config as a parsed JSON object (what ModelConfig.raw holds). JSONEncoder cannot write NaN or
    /// infinity, so the floats are checked first with the messages the parser gives for them.
    public func jsonObject(source: String) throws -> [String: Any] {
        try checkFloats(source: source)
        let data = try JSONEncoder().encode(self)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw bad("\(source): the config did not encode as a JSON object")
        }
        return object
    }

    /// rope_theta, the scaling's numbers and rms_norm_eps positive, in the order ModelConfig.parse checks them.
    func checkFloats(source: String) throws {
        let theta = ropeParameters?.ropeTheta ?? ropeTheta ?? HFConfig.defaultRopeTheta
        guard theta.isFinite, theta > 0 else { throw bad("\(source): rope_theta must be a positive number, got \(theta)") }
        let key = ropeParameters != nil ? Key.ropeParameters : Key.ropeScaling
        var scaling = ropeParameters
        if scaling == nil, case .some(let s)? = ropeScaling { scaling = s }
        for (name, value) in scaling?.numbers ?? [] {
            guard let value else { continue }
            guard value.isFinite, value > 0 else {
                throw bad("\(source): \(key.rawValue) \(name.rawValue) must be a positive number, got \(value)")
            }
        }
        if let eps = rmsNormEps, !(eps.isFinite && eps > 0) {
            throw bad("\(source): \(Key.rmsNormEps.rawValue) must be a positive number, got \(shown(eps))")
        }
    }
}

/// rope_scaling or rope_parameters.
public struct HFRopeScaling: Codable, Sendable, Equatable {
    public var ropeType: String?
    /// What older files call rope_type.
    public var type: String?
    public var ropeTheta: Double?
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Double?

    public enum CodingKeys: String, CodingKey, Sendable {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor, lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor", originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(ropeType: String? = nil, factor: Double? = nil, lowFreqFactor: Double? = nil,
                highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Double? = nil) {
        self.ropeType = ropeType; self.factor = factor; self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor; self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    /// The scaling parameters with their keys, in the order the parser reads them.
    var numbers: [(CodingKeys, Double?)] {
        [(.factor, factor), (.lowFreqFactor, lowFreqFactor), (.highFreqFactor, highFreqFactor),
         (.originalMaxPositionEmbeddings, originalMaxPositionEmbeddings)]
    }
}

/// A value or JSON null: an Optional alone leaves the key out of the encoded object.
public enum Nullable<Wrapped: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    case null
    case some(Wrapped)

    public init(from decoder: Swift.Decoder) throws {
        let c = try decoder.singleValueContainer()
        self = c.decodeNil() ? .null : .some(try c.decode(Wrapped.self))
    }

    public func encode(to encoder: Swift.Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .some(let v): try c.encode(v)
        }
    }
}
