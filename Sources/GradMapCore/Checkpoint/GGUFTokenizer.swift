// A Hugging Face tokenizer.json (and tokenizer_config.json) rebuilt from a GGUF's tokenizer.ggml.* metadata,
// for the two BPE flavours LLaMA-family GGUFs use: "gpt2" (byte-level BPE) and "llama" (SentencePiece BPE with
// byte fallback). The objects are plain [String: Any] for JSONSerialization and load with Python `tokenizers`.
import Foundation
import GradMapSupport

extension GGUFFile {
    /// GGUF token types (llama.cpp's llama_token_type).
    enum TokenType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    /// Pre-tokenizer split patterns by `tokenizer.ggml.pre`, as llama.cpp applies them before byte-level BPE.
    static let llama3Split =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Split =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let splitByPre: [String: String] = [
        "llama3": llama3Split, "llama-v3": llama3Split, "llama-bpe": llama3Split, "smaug-bpe": llama3Split,
        "qwen2": qwen2Split, "deepseek-r1-qwen": qwen2Split,
    ]
    /// Pre-tokenizers llama.cpp runs as "\p{N}" (each digit alone) and then the GPT-2 split.
    static let digitsFirst: Set<String> = ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"]

    /// GPT-2's byte → printable character map (bytes_to_unicode).
    static let byteToUnicode: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = printable.map { Character(Unicode.Scalar(UInt32($0))!) }
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            chars.append(Character(Unicode.Scalar(UInt32(256 + n))!))
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, chars) { table[b] = c }
        return table
    }()

    func tokenizerModel() throws -> String {
        guard let model = try string("tokenizer.ggml.model") else { throw bad("\(path): missing metadata tokenizer.ggml.model") }
        guard model == "gpt2" || model == "llama" else {
            throw bad("\(path): tokenizer.ggml.model '\(shown(model))' is not supported; expected gpt2 or llama")
        }
        return model
    }

    func tokenList() throws -> (tokens: [String], types: [Int]) {
        guard let tokens = try strings("tokenizer.ggml.tokens") else { throw bad("\(path): missing metadata tokenizer.ggml.tokens") }
        guard !tokens.isEmpty else { throw bad("\(path): metadata tokenizer.ggml.tokens is empty; expected the vocabulary") }
        let types = try ints("tokenizer.ggml.token_type") ?? [Int](repeating: TokenType.normal.rawValue, count: tokens.count)
        guard types.count == tokens.count else {
            throw bad("\(path): metadata tokenizer.ggml.token_type has \(types.count) entries; expected \(tokens.count), one per token")
        }
        return (tokens, types)
    }

    func tokenID(_ key: String, count: Int) throws -> Int? {
        guard let id = try int("tokenizer.ggml." + key) else { return nil }
        guard id >= 0, id < count else {
            throw bad("\(path): metadata tokenizer.ggml.\(key) = \(id) is outside the vocabulary of \(count)")
        }
        return id
    }

    static func addedToken(_ id: Int, _ content: String, special: Bool) -> [String: Any] {
        ["id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false,
         "special": special]
    }

    /// BPE merges when the file has none: every split of a token into two vocabulary tokens, ranked by the
    /// merged token's score (best first), as transformers' generate_merges does for SentencePiece vocabularies.
    static func generateMerges(_ tokens: [String], scores: [Double]) -> [[String]] {
        var ids: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = i }
        var found: [(left: String, right: String, score: Double, order: Int)] = []
        for (i, token) in tokens.enumerated() {
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [(String, String, Int, Int)] = []
            for cut in 1..<scalars.count {
                let l = String(String.UnicodeScalarView(scalars[..<cut])), r = String(String.UnicodeScalarView(scalars[cut...]))
                if let li = ids[l], let ri = ids[r] { local.append((l, r, li, ri)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (l, r, _, _) in local { found.append((l, r, scores[i], found.count)) }
        }
        found.sort { a, b in
            let ka = (a.score, a.left.unicodeScalars.count, a.right.unicodeScalars.count)
            let kb = (b.score, b.left.unicodeScalars.count, b.right.unicodeScalars.count)
            return ka != kb ? ka > kb : a.order < b.order
        }
        return found.map { [$0.left, $0.right] }
    }

    /// Adds BOS/EOS around each sequence as the file asks (add_bos_token / add_eos_token).
    func templateProcessor(bos: (Int, String)?, eos: (Int, String)?) -> [String: Any]? {
        guard bos != nil || eos != nil else { return nil }
        func special(_ t: (Int, String)?, _ typeID: Int) -> [[String: Any]] {
            t.map { [["SpecialToken": ["id": $0.1, "type_id": typeID]]] } ?? []
        }
        func seq(_ id: String, _ typeID: Int) -> [[String: Any]] { [["Sequence": ["id": id, "type_id": typeID]]] }
        var specials: [String: Any] = [:]
        for t in [bos, eos].compactMap({ $0 }) { specials[t.1] = ["id": t.1, "ids": [t.0], "tokens": [t.1]] }
        return [
            "type": "TemplateProcessing",
            "single": special(bos, 0) + seq("A", 0) + special(eos, 0),
            "pair": special(bos, 0) + seq("A", 0) + special(eos, 0) + special(bos, 1) + seq("B", 1) + special(eos, 1),
            "special_tokens": specials,
        ]
    }

    /// A Hugging Face tokenizer.json object for this file's tokenizer.
    public func tokenizerJSON() throws -> [String: Any] {
        let model = try tokenizerModel()
        let (tokens, types) = try tokenList()
        let addBOS = try bool("tokenizer.ggml.add_bos_token") ?? (model == "llama")
        let addEOS = try bool("tokenizer.ggml.add_eos_token") ?? false
        let bosID = try tokenID("bos_token_id", count: tokens.count)
        let eosID = try tokenID("eos_token_id", count: tokens.count)
        let unkID = try tokenID("unknown_token_id", count: tokens.count)
        if addBOS && bosID == nil { throw bad("\(path): metadata tokenizer.ggml.add_bos_token is true but there is no tokenizer.ggml.bos_token_id") }
        if addEOS && eosID == nil { throw bad("\(path): metadata tokenizer.ggml.add_eos_token is true but there is no tokenizer.ggml.eos_token_id") }
        let template = templateProcessor(bos: addBOS ? (bosID!, tokens[bosID!]) : nil, eos: addEOS ? (eosID!, tokens[eosID!]) : nil)

        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        var merges: [Any]
        var out: [String: Any] = ["version": "1.0", "truncation": NSNull(), "padding": NSNull()]
        var bpe: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "continuing_subword_prefix": NSNull(), "end_of_word_suffix": NSNull(),
            "ignore_merges": false,
        ]
        if model == "gpt2" {
            // Every token is spelled in the byte alphabet; llama.cpp stores a few (added ones) in plain text, and
            // those are re-spelled byte by byte, as transformers does.
            let alphabet = Set(GGUFFile.byteToUnicode)
            for (i, t) in tokens.enumerated() {
                let spelled = t.allSatisfy { alphabet.contains($0) } ? t : String(t.utf8.map { GGUFFile.byteToUnicode[Int($0)] })
                if vocab[spelled] == nil { vocab[spelled] = i }
                if types[i] == TokenType.control.rawValue, spelled == t {
                    added.append(GGUFFile.addedToken(i, t, special: true))
                } else if types[i] == TokenType.userDefined.rawValue {
                    added.append(GGUFFile.addedToken(i, t, special: false))
                }
            }
            guard let m = try strings("tokenizer.ggml.merges") else { throw bad("\(path): missing metadata tokenizer.ggml.merges (needed by a gpt2 tokenizer)") }
            merges = m
            let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
            let pre = try string("tokenizer.ggml.pre") ?? "default"
            if GGUFFile.digitsFirst.contains(pre) {
                // As llama.cpp (and SmolLM2's own tokenizer.json): every digit alone, then the GPT-2 split.
                out["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
            } else if let split = GGUFFile.splitByPre[pre] {
                out["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                    ["type": "Split", "pattern": ["Regex": split], "behavior": "Isolated", "invert": false],
                    ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
                ]]
            } else {
                out["pre_tokenizer"] = byteLevel
            }
            out["normalizer"] = NSNull()
            let postByteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
            out["post_processor"] = template.map { ["type": "Sequence", "processors": [postByteLevel, $0]] } ?? postByteLevel
            out["decoder"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
            bpe["unk_token"] = NSNull()
            bpe["fuse_unk"] = false
            bpe["byte_fallback"] = false
        } else {
            for (i, t) in tokens.enumerated() {
                if vocab[t] == nil { vocab[t] = i }
                if types[i] == TokenType.control.rawValue || types[i] == TokenType.unknown.rawValue {
                    added.append(GGUFFile.addedToken(i, t, special: true))
                } else if types[i] == TokenType.userDefined.rawValue {
                    added.append(GGUFFile.addedToken(i, t, special: false))
                }
            }
            if let m = try strings("tokenizer.ggml.merges") {
                merges = m
            } else {
                guard let scores = try doubles("tokenizer.ggml.scores"), scores.count == tokens.count else {
                    throw bad("\(path): a llama tokenizer without tokenizer.ggml.merges needs tokenizer.ggml.scores, one per token")
                }
                merges = GGUFFile.generateMerges(tokens, scores: scores)
            }
            // SentencePiece: spaces are "▁", and the text gets a leading "▁" unless the file says not to.
            let prefix = try bool("tokenizer.ggml.add_space_prefix") ?? true
            let replace: [String: Any] = ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"]
            out["normalizer"] = prefix
                ? ["type": "Sequence", "normalizers": [["type": "Prepend", "prepend": "\u{2581}"], replace]] : replace
            out["pre_tokenizer"] = NSNull()
            out["post_processor"] = template ?? NSNull()
            var decoders: [[String: Any]] = [
                ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
            ]
            if prefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
            out["decoder"] = ["type": "Sequence", "decoders": decoders]
            bpe["unk_token"] = tokens[unkID ?? 0]
            bpe["fuse_unk"] = true
            bpe["byte_fallback"] = true
        }
        bpe["vocab"] = vocab
        bpe["merges"] = merges
        out["model"] = bpe
        out["added_tokens"] = added
        return out
    }

    /// tokenizer_config.json: special tokens by content, add_bos/add_eos, the chat template if the file has one.
    public func tokenizerConfigJSON() throws -> [String: Any] {
        let model = try tokenizerModel()
        let (tokens, _) = try tokenList()
        var out: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false,
            "add_bos_token": try bool("tokenizer.ggml.add_bos_token") ?? (model == "llama"),
            "add_eos_token": try bool("tokenizer.ggml.add_eos_token") ?? false,
        ]
        for (key, field) in [("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"), ("unknown_token_id", "unk_token"), ("padding_token_id", "pad_token")] {
            if let id = try tokenID(key, count: tokens.count) { out[field] = tokens[id] }
        }
        if let arch = try string("general.architecture"), let n = try int(arch + ".context_length") { out["model_max_length"] = n }
        if let t = try string("tokenizer.chat_template") { out["chat_template"] = t }
        return out
    }
}

extension GGUFModel {
    public func tokenizerJSON() throws -> [String: Any] { try file.tokenizerJSON() }
    public func tokenizerConfigJSON() throws -> [String: Any] { try file.tokenizerConfigJSON() }
}
