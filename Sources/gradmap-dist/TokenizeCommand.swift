// `gradmap-dist tokenize`: a UTF-8 text file to token ids with the model's tokenizer.json, written as the raw
// little-endian uint32 file that eval and grad-stats read (--tokens).
import ArgumentParser
import Foundation
import GradMapCore

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode a UTF-8 text file with a model's tokenizer.json (no special tokens unless --add-bos).")

    @Option(name: .long, help: "Model folder with tokenizer.json (or the tokenizer.json itself).")
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
        let tokenizer = try Tokenizer(model: model)
        if addBos && tokenizer.bosTokenID == nil {
            throw GradMapError.badInput("--add-bos: \(tokenizer.source) has no BOS token (its post_processor adds none)")
        }
        let content = try readUTF8Text(path: text)
        let characters = content.unicodeScalars.count
        let start = DispatchTime.now()
        let ids = tokenizer.encode(content, addBOS: addBos)
        let seconds = elapsed(since: start)
        if let out {
            var bytes = [UInt8]()
            bytes.reserveCapacity(ids.count * 4)
            for id in ids { withUnsafeBytes(of: id.littleEndian) { bytes.append(contentsOf: $0) } }
            guard FileManager.default.createFile(atPath: out, contents: Data(bytes)) else {
                throw GradMapError.badInput("--out: cannot write \(out)")
            }
        }
        let rate = seconds > 0 ? Double(characters) / seconds : 0
        if json {
            var fields: [(String, JSONValue)] = [
                ("tokens", .int(ids.count)), ("characters", .int(characters)), ("seconds", .double(seconds)),
                ("chars_per_second", .double(rate.rounded())), ("vocab_size", .int(tokenizer.vocabSize)),
            ]
            if let out { fields.append(("out", .string(out))) }
            print(JSONValue.object(fields).render())
        } else {
            print(String(format: "tokens %d  characters %d  %.3f s (%.0f chars/s, %.2f chars/token)%@",
                         ids.count, characters, seconds, rate, ids.isEmpty ? 0 : Double(characters) / Double(ids.count),
                         out.map { "  → \($0)" } ?? ""))
        }
    }
}
