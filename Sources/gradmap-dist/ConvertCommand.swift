// `gradmap-dist convert`: a GGUF file → a Hugging Face checkpoint folder that transformers and this engine load.
import ArgumentParser
import Foundation
import GradMapFormats

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
        var c = ConvertConfig(model: model, out: out)
        c.force = force
        c.tokenizerOnly = tokenizerOnly
        let result = try ConvertResult.make(c)
        for note in result.notes { FileHandle.standardError.write(Data("gradmap-dist: \(note)\n".utf8)) }
        print(result.text)
    }
}
