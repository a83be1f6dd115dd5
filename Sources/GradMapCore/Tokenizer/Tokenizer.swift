// A Hugging Face `tokenizers`-compatible encoder for the BPE tokenizers LLaMA-family models use: byte-level
// (GPT-2 style: SmolLM2, LLaMA-3, Qwen2) and SentencePiece-style with byte fallback (LLaMA-2, Mistral).
// encode(text) gives the ids Python's `tokenizer.encode(text, add_special_tokens=False).ids` gives: added tokens
// are cut out first, each stretch between them is normalized, pre-tokenized into words, and each word is
// BPE-encoded (cached per word, so a long text costs one BPE run per distinct word).
import Foundation
import GradMapSupport

public final class Tokenizer {
    /// Where the tokenizer came from (the tokenizer.json path), for messages.
    public let source: String
    /// Model vocabulary plus added tokens: one past the largest id.
    public let vocabSize: Int
    /// Prepended by encode(_:addBOS: true): the first special token of a TemplateProcessing post-processor
    /// (LLaMA-2's <s>, LLaMA-3's <|begin_of_text|>), nil when the post-processor adds none. Settable for
    /// tokenizers built from other metadata (GGUF's bos_token_id with add_bos_token).
    public var bosTokenID: UInt32?

    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: Decoder?
    let rawAdded: AddedTokenMatcher
    let normalizedAdded: AddedTokenMatcher
    let addedByID: [UInt32: AddedToken]
    /// What decode() gives the decoder for an added token: its content, normalized when the token is matched
    /// normalized (as `tokenizers` 0.23 does, so LLaMA-2's "▁" prefix of such a token decodes to a space).
    let addedDecodeForm: [UInt32: String]

    /// Word → ids. Not thread-safe: a Tokenizer is used from one thread at a time.
    private var cache: [[UInt32]: [UInt32]] = [:]
    private static let cacheLimit = 1 << 20
    private static let cachedWordLength = 256

    /// Reads a tokenizer.json.
    public convenience init(path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
              let data = FileManager.default.contents(atPath: path)
        else {
            throw bad("\(path): file not found (expected a Hugging Face tokenizer.json)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let json = object as? [String: Any] else {
            throw bad("\(path): not a JSON object (expected a Hugging Face tokenizer.json)")
        }
        try self.init(json: json, source: path)
    }

    /// The same object already parsed (or built, e.g. from GGUF metadata); `source` names it in errors.
    public init(json: [String: Any], source: String) throws {
        self.source = source
        guard let modelObject = json["model"] as? [String: Any] else {
            throw bad("\(source): no \"model\" object (expected a Hugging Face tokenizer.json)")
        }
        model = try BPEModel(modelObject, source: source)
        normalizer = try Tokenizer.component(json["normalizer"], "normalizer", source) { try Normalizer($0, source: source) }
        preTokenizer = try Tokenizer.component(json["pre_tokenizer"], "pre_tokenizer", source) { try PreTokenizer($0, source: source) }
        decoder = try Tokenizer.component(json["decoder"], "decoder", source) { try Decoder($0, source: source) }

        var added: [AddedToken] = []
        if let list = json["added_tokens"], !(list is NSNull) {
            guard let entries = list as? [[String: Any]] else {
                throw bad("\(source): added_tokens must be a list of objects, got \(kind(list))")
            }
            for (i, e) in entries.enumerated() {
                guard let content = e["content"] as? String, let id = jsonInt(e["id"]).flatMap({ UInt32(exactly: $0) }) else {
                    throw bad("\(source): added_tokens[\(i)] needs a string \"content\" and a non-negative integer \"id\"")
                }
                guard id < BPEModel.maxID else {
                    throw bad("\(source): added_tokens[\(i)] id \(id) is past the limit of \(BPEModel.maxID) ids")
                }
                added.append(AddedToken(
                    id: id, content: content, special: e["special"] as? Bool ?? false, lstrip: e["lstrip"] as? Bool ?? false,
                    rstrip: e["rstrip"] as? Bool ?? false, singleWord: e["single_word"] as? Bool ?? false,
                    normalized: e["normalized"] as? Bool ?? !(e["special"] as? Bool ?? false)))
            }
        }
        let raw = added.filter { !$0.normalized }
        let norm = added.filter { $0.normalized }
        rawAdded = AddedTokenMatcher(raw, patterns: raw.map { scalarValues($0.content) })
        let normalizer = self.normalizer
        normalizedAdded = AddedTokenMatcher(norm, patterns: norm.map { t in
            let s = scalarValues(t.content)
            return normalizer?.apply(s) ?? s
        })
        addedByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { _, b in b })
        addedDecodeForm = addedByID.mapValues { t in
            guard t.normalized, let normalizer else { return t.content }
            return string(normalizer.apply(scalarValues(t.content)))
        }
        vocabSize = max(model.tokens.count, Int(added.map { $0.id }.max() ?? 0) + 1)
        bosTokenID = Tokenizer.templateBOS(json["post_processor"])
    }

    private static func component<T>(_ raw: Any?, _ key: String, _ source: String, _ make: ([String: Any]) throws -> T) throws -> T? {
        guard let raw, !(raw is NSNull) else { return nil }
        guard let object = raw as? [String: Any] else { throw bad("\(source): \(key) must be an object or null, got \(kind(raw))") }
        return try make(object)
    }

    /// The id of the special token a TemplateProcessing post-processor puts first, if any.
    private static func templateBOS(_ raw: Any?) -> UInt32? {
        guard let p = raw as? [String: Any] else { return nil }
        if p["type"] as? String == "Sequence", let list = p["processors"] as? [Any] {
            return list.lazy.compactMap { templateBOS($0) }.first
        }
        guard p["type"] as? String == "TemplateProcessing", let single = p["single"] as? [[String: Any]],
              let first = single.first?["SpecialToken"] as? [String: Any], let name = first["id"] as? String,
              let specials = p["special_tokens"] as? [String: Any], let entry = specials[name] as? [String: Any],
              let ids = entry["ids"] as? [Any], let id = jsonInt(ids.first)
        else { return nil }
        return UInt32(exactly: id)
    }

    /// Token ids of `text`, without special tokens unless `addBOS` (and the tokenizer has a BOS token).
    public func encode(_ text: String, addBOS: Bool = false) -> [UInt32] {
        var out: [UInt32] = []
        if addBOS, let bos = bosTokenID { out.append(bos) }
        let scalars = scalarValues(text)
        out.reserveCapacity(scalars.count / 3)
        for (range, id) in rawAdded.split(scalars) {
            if let id {
                out.append(id)
                continue
            }
            var piece = Array(scalars[range])
            if let normalizer { piece = normalizer.apply(piece) }
            for (r, nid) in normalizedAdded.split(piece) {
                if let nid {
                    out.append(nid)
                    continue
                }
                let start = Piece(text: r.count == piece.count ? piece : Array(piece[r]), atStart: range.lowerBound == 0 && r.lowerBound == 0)
                let words = preTokenizer?.apply([start]) ?? [start]
                for w in words where !w.text.isEmpty { encodeWord(w.text, into: &out) }
            }
        }
        return out
    }

    private func encodeWord(_ word: [UInt32], into out: inout [UInt32]) {
        guard word.count <= Tokenizer.cachedWordLength else {
            model.tokenize(word, into: &out)
            return
        }
        if let ids = cache[word] {
            out.append(contentsOf: ids)
            return
        }
        let before = out.count
        model.tokenize(word, into: &out)
        if cache.count >= Tokenizer.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[word] = Array(out[before...])
    }

    /// Text of `ids` through the decoder (special tokens kept unless `skipSpecialTokens`); unknown ids are skipped.
    public func decode(_ ids: [UInt32], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let a = addedByID[id] {
                if !(skipSpecialTokens && a.special) { tokens.append(addedDecodeForm[id] ?? a.content) }
            } else if Int(id) < model.tokens.count, let t = model.tokens[Int(id)] {
                tokens.append(t)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.apply(tokens).joined()
    }

    /// The string of one id (its vocabulary entry or added token), nil when the id is unused.
    public func token(_ id: UInt32) -> String? {
        if let a = addedByID[id] { return a.content }
        return Int(id) < model.tokens.count ? model.tokens[Int(id)] : nil
    }
}
