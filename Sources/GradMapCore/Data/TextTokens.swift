// Text → token ids with the model's own tokenizer (tokenizer.json of a folder, or a GGUF's metadata), as
// --text and --eval-text use it: no BOS, the whole file encoded once (method.md's protocol).
import GradMapFormats
import GradMapTokenizer

public enum TextTokens {
    public static func encode(textFile: String, model: Checkpoint) throws -> [UInt32] {
        let text = try readUTF8Text(path: textFile)
        return try Tokenizer(checkpoint: model).encode(text)
    }
}
