// `tokenize`: a UTF-8 text file to token ids with the model's tokenizer, optionally written as the raw
// little-endian uint32 file the other jobs read (TokenInput.tokens), built beside it and renamed.
import Foundation
import GradMapFormats
import GradMapSupport
import GradMapTokenizer

public struct TokenizeConfig: Sendable {
    /// Model folder with tokenizer.json, the tokenizer.json itself, or a .gguf file.
    public var model: String
    public var text: String
    /// Where to write the ids; nil: count only.
    public var out: String? = nil
    /// Prepend the tokenizer's BOS token.
    public var addBOS = false

    public init(model: String, text: String) {
        self.model = model
        self.text = text
    }
}

public struct TokenizeResult: Sendable {
    public let config: TokenizeConfig
    public let tokens: Int
    /// Unicode scalars of the text.
    public let characters: Int
    public let seconds: Double
    public let vocabSize: Int

    var rate: Double { seconds > 0 ? Double(characters) / seconds : 0 }

    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("tokens", .int(tokens)), ("characters", .int(characters)), ("seconds", .double(seconds)),
            ("chars_per_second", .double(rate.rounded())), ("vocab_size", .int(vocabSize)),
        ]
        if let out = config.out { fields.append(("out", .string(out))) }
        return .object(fields)
    }

    public var text: String {
        String(format: "tokens %d  characters %d  %.3f s (%.0f chars/s, %.2f chars/token)%@",
               tokens, characters, seconds, rate, tokens == 0 ? 0 : Double(characters) / Double(tokens),
               config.out.map { "  → \($0)" } ?? "")
    }

    public static func make(_ config: TokenizeConfig) throws -> TokenizeResult {
        let tokenizer = try Tokenizer(model: config.model)
        if config.addBOS && tokenizer.bosTokenID == nil {
            throw bad(.addBOS, nil, "\(tokenizer.source) has no BOS token (its post_processor adds none)")
        }
        let content = try readUTF8Text(path: config.text)
        let start = DispatchTime.now()
        let ids = tokenizer.encode(content, addBOS: config.addBOS)
        let seconds = elapsed(since: start)
        if let out = config.out {
            var bytes = [UInt8]()
            bytes.reserveCapacity(ids.count * 4)
            for id in ids { withUnsafeBytes(of: id.littleEndian) { bytes.append(contentsOf: $0) } }
            try namingFile(out) { try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic) }
        }
        return TokenizeResult(
            config: config, tokens: ids.count, characters: content.unicodeScalars.count, seconds: seconds,
            vocabSize: tokenizer.vocabSize)
    }
}
