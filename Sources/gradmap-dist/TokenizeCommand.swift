// `gradmap-dist tokenize`: a UTF-8 text file to token ids with the model's tokenizer, written as the raw
// little-endian uint32 file that eval and grad-stats read (--tokens).
import ArgumentParser
import GradMapJob

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode a UTF-8 text file with a model's tokenizer.json (no special tokens unless --add-bos).")

    @Option(name: .long, help: "Model folder with tokenizer.json (or the tokenizer.json itself, or a .gguf file).")
    var model: String
    @Option(name: .long, help: "UTF-8 text file to encode.")
    var text: String
    @Option(name: .long, help: "Write the ids here as little-endian uint32; without it, print a summary only.")
    var out: String?
    @Flag(name: .long, help: "Prepend the tokenizer's BOS token (from its TemplateProcessing post-processor).")
    var addBos = false
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        var c = TokenizeConfig(model: model, text: text)
        c.out = out
        c.addBOS = addBos
        let result = try TokenizeResult.make(c)
        print(json ? result.json.render() : result.text)
    }
}
