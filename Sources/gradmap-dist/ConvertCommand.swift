// `gradmap-dist convert`: a GGUF file → a Hugging Face checkpoint folder (config.json, F32 model.safetensors,
// tokenizer.json, tokenizer_config.json) that transformers and this engine load. The folder is built beside
// the target and renamed into place at the end, so an interrupted run never leaves a half-written checkpoint.
import ArgumentParser
import Foundation
import GradMapCore

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a GGUF file (llama or qwen2; F32/F16/BF16, Q8_0, Q4_0/Q4_1, Q5_0/Q5_1 or k-quants) into a Hugging Face folder with F32 weights.")

    @Option(name: .long, help: "The .gguf file.")
    var model: String
    @Option(name: .long, help: "Output folder (must not exist unless --force).")
    var out: String
    @Flag(name: .long, help: "Replace an existing output folder.")
    var force = false
    @Flag(name: .long, help: "Write only tokenizer.json and tokenizer_config.json (from the tokenizer.ggml.* metadata).")
    var tokenizerOnly = false

    func run() throws {
        let target = URL(fileURLWithPath: out).standardizedFileURL
        if FileManager.default.fileExists(atPath: target.path) && !force {
            throw GradMapError.badInput("\(out): already exists; pass --force to replace it")
        }
        switch ModelPath(model) {
        case .folder, .file: throw GradMapError.badInput("\(model): expected a .gguf file")
        case .gguf, .missing: break  // a missing file is reported by the reader, naming it
        }
        let start = DispatchTime.now()
        let folder = PartialFolder(target.path)
        if tokenizerOnly {
            let file = try GGUFFile(path: model)
            try folder.build(replacing: true, withParents: true) { f in
                try f.write("tokenizer.json", .data(try json(try file.tokenizerJSON(), pretty: false)))
                try f.write("tokenizer_config.json", .data(try json(try file.tokenizerConfigJSON(), pretty: true)))
            }
            print(String(format: "wrote %@: tokenizer.json, tokenizer_config.json (%.1f s)", out, elapsed(since: start)))
            return
        }
        let ckpt = try Checkpoint(path: model)
        guard let gguf = ckpt.gguf else { throw GradMapError.runtime("\(model): not read as GGUF") }
        try ckpt.checkNoUnexpectedTensors()
        let c = ckpt.config
        var files = ["config.json", "model.safetensors"]
        // Tensors in the engine's order (no lm_head.weight when tied), each widened to F32 as it is written.
        let entries = ParamLayout.specs(c, part: .whole(c)).map { spec in
            SafeTensorsEntry(name: spec.name, dtype: .f32, shape: spec.shape) { try ckpt.load(spec.name, shape: spec.shape, into: $0) }
        }
        let bytes = entries.reduce(0) { $0 + $1.byteCount }
        try folder.build(replacing: true, withParents: true) { f in
            try f.writeTensors(entries, as: "model.safetensors")
            try f.write("config.json", .data(try json(c.raw, pretty: true)))
            if gguf.metadata["tokenizer.ggml.model"] != nil {
                try f.write("tokenizer.json", .data(try json(try gguf.tokenizerJSON(), pretty: false)))
                try f.write("tokenizer_config.json", .data(try json(try gguf.tokenizerConfigJSON(), pretty: true)))
                files += ["tokenizer.json", "tokenizer_config.json"]
            } else {
                FileHandle.standardError.write(Data("gradmap-dist: \(model): no tokenizer.ggml.* metadata; writing no tokenizer files\n".utf8))
            }
        }
        print(String(format: "wrote %@: %@; %d tensors, %.1f MiB F32, %d layers%@ (%.1f s)",
                     out, files.joined(separator: ", "), entries.count, Double(bytes) / 1_048_576,
                     c.layers, c.tieEmbeddings ? ", tied embeddings" : "", elapsed(since: start)))
    }

    /// convert's JSON files: sorted keys, compact or indented.
    func json(_ object: [String: Any], pretty: Bool) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys])
    }
}
