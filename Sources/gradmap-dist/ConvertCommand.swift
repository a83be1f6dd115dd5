// `gradmap-dist convert`: a GGUF file → a Hugging Face checkpoint folder (config.json, F32 model.safetensors,
// tokenizer.json, tokenizer_config.json) that transformers and this engine load. The folder is built beside
// the target and renamed into place at the end, so an interrupted run never leaves a half-written checkpoint.
import ArgumentParser
import Foundation
import GradMapCore

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1) into a Hugging Face folder with F32 weights.")

    @Option(name: .long, help: "The .gguf file.")
    var model: String
    @Option(name: .long, help: "Output folder (must not exist unless --force).")
    var out: String
    @Flag(name: .long, help: "Replace an existing output folder.")
    var force = false
    @Flag(name: .long, help: "Write only tokenizer.json and tokenizer_config.json (from the tokenizer.ggml.* metadata).")
    var tokenizerOnly = false

    func run() throws {
        let fm = FileManager.default
        let target = URL(fileURLWithPath: out).standardizedFileURL
        if fm.fileExists(atPath: target.path) && !force {
            throw GradMapError.badInput("\(out): already exists; pass --force to replace it")
        }
        switch ModelPath(model) {
        case .folder, .file: throw GradMapError.badInput("\(model): expected a .gguf file")
        case .gguf, .missing: break  // a missing file is reported by the reader, naming it
        }
        let start = DispatchTime.now()
        if tokenizerOnly {
            let file = try GGUFFile(path: model)
            try build(target) { temp in
                try writeJSON(try file.tokenizerJSON(), to: temp + "/tokenizer.json", pretty: false)
                try writeJSON(try file.tokenizerConfigJSON(), to: temp + "/tokenizer_config.json", pretty: true)
            }
            print(String(format: "wrote %@: tokenizer.json, tokenizer_config.json (%.1f s)", out, elapsed(since: start)))
            return
        }
        let ckpt = try Checkpoint(path: model)
        guard let gguf = ckpt.gguf else { throw GradMapError.runtime("\(model): not read as GGUF") }
        try ckpt.checkNoUnexpectedTensors()
        let c = ckpt.config
        var files = ["config.json", "model.safetensors"]
        var bytes = 0
        try build(target) { temp in
            // Tensors in the engine's order (no lm_head.weight when tied), each widened to F32 as it is written.
            let entries = ParamLayout.specs(c, part: .whole(c)).map { spec in
                SafeTensorsEntry(name: spec.name, dtype: .f32, shape: spec.shape) { try ckpt.load(spec.name, shape: spec.shape, into: $0) }
            }
            bytes = entries.reduce(0) { $0 + $1.byteCount }
            try SafeTensorsWriter.write(entries, to: temp + "/model.safetensors")
            try writeJSON(c.raw, to: temp + "/config.json", pretty: true)
            if gguf.metadata["tokenizer.ggml.model"] != nil {
                try writeJSON(try gguf.tokenizerJSON(), to: temp + "/tokenizer.json", pretty: false)
                try writeJSON(try gguf.tokenizerConfigJSON(), to: temp + "/tokenizer_config.json", pretty: true)
                files += ["tokenizer.json", "tokenizer_config.json"]
            } else {
                FileHandle.standardError.write(Data("gradmap-dist: \(model): no tokenizer.ggml.* metadata; writing no tokenizer files\n".utf8))
            }
        }
        print(String(format: "wrote %@: %@; %d tensors, %.1f MiB F32, %d layers%@ (%.1f s)",
                     out, files.joined(separator: ", "), ParamLayout.specs(c, part: .whole(c)).count, Double(bytes) / 1_048_576,
                     c.layers, c.tieEmbeddings ? ", tied embeddings" : "", elapsed(since: start)))
    }

    /// Fills a fresh folder beside the target, then renames it into place (replacing the target with --force).
    func build(_ target: URL, _ fill: (String) throws -> Void) throws {

        let temp = target.deletingLastPathComponent().appendingPathComponent(
            ".\(target.lastPathComponent).partial-\(ProcessInfo.processInfo.processIdentifier)").path
        try? fm.removeItem(atPath: temp)
        do {
            try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)
        } catch {
            throw GradMapError.badInput("\(out): cannot create \(temp) (\(error.localizedDescription))")
        }
        var done = false
        defer { if !done { try? fm.removeItem(atPath: temp) } }
        try fill(temp)
        if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
        do {
            try fm.moveItem(atPath: temp, toPath: target.path)
        } catch {
            throw GradMapError.runtime("\(out): cannot rename \(temp) into place (\(error.localizedDescription))")
        }
        done = true
    }

    func writeJSON(_ object: [String: Any], to path: String, pretty: Bool) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys])
        guard fm.createFile(atPath: path, contents: data) else { throw GradMapError.runtime("\(path): cannot write") }
    }

    var fm: FileManager { FileManager.default }
}
