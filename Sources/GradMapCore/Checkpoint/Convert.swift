// `convert`: a GGUF file → a Hugging Face checkpoint folder (config.json, F32 model.safetensors,
// tokenizer.json, tokenizer_config.json) that transformers and this engine load. The folder is built beside
// the target and renamed into place at the end, so an interrupted run never leaves a half-written checkpoint.
import Foundation
import GradMapSupport

public struct ConvertConfig: Sendable {
    /// The .gguf file.
    public var model: String
    /// The folder to create.
    public var out: String
    /// Replace an existing `out`.
    public var force = false
    /// Only tokenizer.json and tokenizer_config.json (from the tokenizer.ggml.* metadata).
    public var tokenizerOnly = false

    public init(model: String, out: String) {
        self.model = model
        self.out = out
    }
}

public struct ConvertResult: Sendable {
    public let config: ConvertConfig
    public let files: [String]
    public let tensors: Int
    public let bytes: Int
    public let layers: Int
    public let tied: Bool
    public let seconds: Double
    /// Why a file that would be expected is not written (no tokenizer metadata).
    public let notes: [String]

    public var text: String {
        if config.tokenizerOnly {
            return String(format: "wrote %@: %@ (%.1f s)", config.out, files.joined(separator: ", "), seconds)
        }
        return String(format: "wrote %@: %@; %d tensors, %.1f MiB F32, %d layers%@ (%.1f s)",
                      config.out, files.joined(separator: ", "), tensors, Double(bytes) / 1_048_576,
                      layers, tied ? ", tied embeddings" : "", seconds)
    }

    public static func make(_ config: ConvertConfig) throws -> ConvertResult {
        let target = URL(fileURLWithPath: config.out).standardizedFileURL
        if FileManager.default.fileExists(atPath: target.path) && !config.force {
            throw bad(.out, config.out, "already exists; replaced only when forced")
        }
        switch ModelPath(config.model) {
        case .folder, .file: throw bad(.model, config.model, "expected a .gguf file")
        case .gguf, .missing: break  // a missing file is reported by the reader, naming it
        }
        let start = DispatchTime.now()
        let folder = PartialFolder(target.path)
        let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json"]
        func writeTokenizer(_ gguf: GGUFFile, _ f: PartialFolder) throws {
            try f.write("tokenizer.json", .data(try json(try gguf.tokenizerJSON(), pretty: false)))
            try f.write("tokenizer_config.json", .data(try json(try gguf.tokenizerConfigJSON(), pretty: true)))
        }
        if config.tokenizerOnly {
            let file = try GGUFFile(path: config.model)
            try folder.build(replacing: true, withParents: true) { try writeTokenizer(file, $0) }
            return ConvertResult(config: config, files: tokenizerFiles, tensors: 0, bytes: 0, layers: 0, tied: false,
                                 seconds: elapsed(since: start), notes: [])
        }
        let ckpt = try Checkpoint(path: config.model)
        guard let gguf = ckpt.gguf else { throw GradMapError.runtime("\(config.model): not read as GGUF") }
        try ckpt.checkNoUnexpectedTensors()
        let c = ckpt.config
        var files = ["config.json", "model.safetensors"]
        var notes: [String] = []
        // Tensors in the engine's order (no lm_head.weight when tied), each widened to F32 as it is written.
        let entries = ParamLayout.specs(c, part: .whole(c)).map { spec in
            SafeTensorsEntry(name: spec.name, dtype: .f32, shape: spec.shape) { try ckpt.load(spec.name, shape: spec.shape, into: $0) }
        }
        try folder.build(replacing: true, withParents: true) { f in
            try f.writeTensors(entries, as: "model.safetensors")
            try f.write("config.json", .data(try json(c.raw, pretty: true)))
            if gguf.metadata["tokenizer.ggml.model"] != nil {
                try writeTokenizer(gguf, f)
                files += tokenizerFiles
            } else {
                notes.append("\(config.model): no tokenizer.ggml.* metadata; writing no tokenizer files")
            }
        }
        return ConvertResult(
            config: config, files: files, tensors: entries.count, bytes: entries.reduce(0) { $0 + $1.byteCount },
            layers: c.layers, tied: c.tieEmbeddings, seconds: elapsed(since: start), notes: notes)
    }

    /// convert's JSON files: sorted keys, compact or indented.
    static func json(_ object: [String: Any], pretty: Bool) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys])
    }
}
