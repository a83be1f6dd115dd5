// Inputs of `tokenize`: a strictly validated UTF-8 text file (a bad byte is an error with its offset, never a
// silent U+FFFD), and where a model's tokenizer lives.
import Foundation
import GradMapFormats
import GradMapSupport

/// The file's text; bad input when it is missing or not valid UTF-8 (naming the offset of the first bad byte).
public func readUTF8Text(path: String) throws -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
          let data = FileManager.default.contents(atPath: path)
    else {
        throw bad("\(path): file not found (expected a UTF-8 text file)")
    }
    let bytes = [UInt8](data)
    if let offset = firstInvalidUTF8(bytes) {
        throw bad("\(path): not valid UTF-8 at byte offset \(offset) (byte 0x\(String(format: "%02X", bytes[offset]))); expected a UTF-8 text file")
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Offset of the first byte that does not start a well-formed UTF-8 sequence (Unicode table 3-7: no overlong
/// forms, no surrogates, nothing above U+10FFFF; a truncated sequence counts from its lead byte, as Python
/// reports it), or nil when all is well-formed.
func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
    var i = 0
    let n = b.count
    while i < n {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        var need = 0
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // range of the second byte
        switch c {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default: return i
        }
        for k in 1...need {
            guard i + k < n else { return i }
            let x = b[i + k]
            let (l, h) = k == 1 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
            if x < l || x > h { return i }
        }
        i += need + 1
    }
    return nil
}

extension Tokenizer {
    /// The tokenizer of a model: `M/tokenizer.json` for a checkpoint folder, the tokenizer in a GGUF file's
    /// metadata, or M itself when it is a tokenizer.json file.
    public convenience init(model: String) throws {
        switch ModelPath(model) {
        case .missing:
            throw bad("\(model): not found (expected a model folder with tokenizer.json)")
        case .folder: try self.init(folder: model)
        case .gguf: try self.init(checkpoint: try Checkpoint(path: model))
        case .file: try self.init(path: model)
        }
    }

    /// The tokenizer of an opened checkpoint: a GGUF's from the metadata already read, a folder's tokenizer.json.
    public convenience init(checkpoint: Checkpoint) throws {
        guard let gguf = checkpoint.gguf else {
            try self.init(folder: checkpoint.path)
            return
        }
        try self.init(json: try gguf.tokenizerJSON(), source: checkpoint.path)
    }

    convenience init(folder: String) throws {
        let path = (folder as NSString).appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: path) else {
            throw bad("\(folder): no tokenizer.json in the model folder (expected a Hugging Face tokenizer.json)")
        }
        try self.init(path: path)
    }
}
