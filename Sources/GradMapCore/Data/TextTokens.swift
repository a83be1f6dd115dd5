// Text → token ids with the model's own tokenizer (tokenizer.json of a folder, or a GGUF's metadata).
import Foundation

public enum TextTokens {
    /// Set by the tokenizer module: encodes a UTF-8 text file with the checkpoint's tokenizer.
    nonisolated(unsafe) public static var encoder: ((String, Checkpoint) throws -> [UInt32])? = nil

    public static func encode(textFile: String, model: Checkpoint) throws -> [UInt32] {
        guard let encoder else { throw bad("--text \(textFile): this build has no tokenizer; use --tokens") }
        return try encoder(textFile, model)
    }
}
