// What a --model path names, decided here only: a Hugging Face folder, a GGUF file (by its name ending in
// .gguf), another file (a tokenizer.json or a config.json), or nothing. Each command says in its own words
// what it expected; the checkpoint itself is opened by Checkpoint(path:) alone.
import Foundation

public enum ModelPath: Equatable, Sendable {
    case folder(String)
    case gguf(String)
    case file(String)
    case missing(String)

    public init(_ path: String) {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            self = .missing(path)
        } else if isDir.boolValue {
            self = .folder(path)
        } else if path.lowercased().hasSuffix(".gguf") {
            self = .gguf(path)
        } else {
            self = .file(path)
        }
    }
}
