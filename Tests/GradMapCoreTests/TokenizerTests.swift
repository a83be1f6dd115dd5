// The tokenizer against Hugging Face `tokenizers`: ids (and decoded text) of every fixture string must be
// identical to Python's (scripts/make_tokenizer_fixtures.py); byte-level round trips; bad input; the CLI.
// The real SmolLM2 tokenizer (~3.5 MB as tokenizer.json) is not committed: RealModelTests checks it, read
// from the GGUF that launch/fetch-assets fetches, against smollm2_expected.json.
import Foundation
import XCTest

@testable import GradMapSupport
@testable import GradMapTokenizer

final class TokenizerTests: XCTestCase {
    static let root = Fixtures.root + "/tokenizers"
    static let names = [
        "bytelevel_digits", "gpt2_prefix_space", "llama3_split", "qwen2_split", "llama2_legacy", "metaspace_first",
        "metaspace_split",
    ]

    struct Case {
        let text: String
        let ids: [UInt32]
        let decoded: String
    }

    struct Expected {
        let cases: [Case]
        let bos: UInt32?
        let vocabSize: Int
    }

    func expected(_ path: String) throws -> Expected {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let o = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cases = (o["cases"] as! [[String: Any]]).map {
            Case(text: $0["text"] as! String, ids: ($0["ids"] as! [Int]).map { UInt32($0) }, decoded: $0["decoded"] as! String)
        }
        return Expected(cases: cases, bos: (o["bos_id"] as? Int).map { UInt32($0) }, vocabSize: o["vocab_size"] as! Int)
    }

    func check(_ tokenizer: Tokenizer, _ exp: Expected, _ name: String) {
        XCTAssertEqual(tokenizer.vocabSize, exp.vocabSize, name)
        XCTAssertEqual(tokenizer.bosTokenID, exp.bos, name)
        var failures = 0
        for c in exp.cases {
            let ids = tokenizer.encode(c.text)
            XCTAssertEqual(ids, c.ids, "\(name): ids of \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, "\(name): decode of \(c.text.debugDescription)")
            if ids != c.ids { failures += 1 }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) of \(exp.cases.count) strings differ from tokenizers")
    }

    func testFixturesMatchHuggingFaceTokenizers() throws {
        for name in Self.names {
            let dir = Self.root + "/" + name
            let tokenizer = try Tokenizer(path: dir + "/tokenizer.json")
            check(tokenizer, try expected(dir + "/expected.json"), name)
        }
    }

    func testModelFolderFindsTokenizerJSON() throws {
        let t = try Tokenizer(model: Self.root + "/llama3_split")
        XCTAssertEqual(t.source, Self.root + "/llama3_split/tokenizer.json")
        XCTAssertEqual(t.encode("Hello world"), try Tokenizer(path: t.source).encode("Hello world"))
    }

    /// Same file through `init(json:source:)` with Swift values (as a GGUF reader would build it).
    func testInitFromBuiltObject() throws {
        let dir = Self.root + "/bytelevel_digits"
        let parsed = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer.json"))) as! [String: Any]
        var model = parsed["model"] as! [String: Any]
        var vocab: [String: Int] = [:]
        for (k, v) in model["vocab"] as! [String: Any] { vocab[k] = v as? Int }
        model["vocab"] = vocab
        model["merges"] = (model["merges"] as! [[String]]).map { $0.joined(separator: " ") }
        var json = parsed
        json["model"] = model
        let built = try Tokenizer(json: json, source: "built")
        check(built, try expected(dir + "/expected.json"), "bytelevel_digits (built)")
    }

    func testByteLevelRoundTrip() throws {
        // Every byte has a token, so decode(encode(x)) == x for any text (apart from normalization: Qwen2's
        // NFC; added tokens whose content is not in the byte alphabet, like the fixtures' "naïve"; and the
        // spaces that lstrip/rstrip tokens take, like the fixtures' <mask> and <rs>).
        var rng = SplitMix64(state: 7)  // the library's generator
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0x09...0x0D, 0xA0...0x17F, 0x370...0x3FF, 0x4E00...0x4FFF, 0x1F300...0x1F64F, 0x2000...0x206F]
        var randomTexts: [String] = []
        for _ in 0..<200 {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int(rng.next() % 60) {
                let pool = pools[Int(rng.next() % UInt64(pools.count))]
                if let u = Unicode.Scalar(pool.lowerBound + UInt32(rng.next() % UInt64(pool.count))) { s.append(u) }
            }
            randomTexts.append(String(s))
        }
        for name in ["bytelevel_digits", "llama3_split"] {
            let dir = Self.root + "/" + name
            let tokenizer = try Tokenizer(path: dir + "/tokenizer.json")
            let texts = try expected(dir + "/expected.json").cases.map { $0.text }.filter { !$0.contains("naïve") && !$0.contains("<mask>") && !$0.contains("<rs>") } + randomTexts
            for text in texts {
                XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text, "\(name): \(text.debugDescription)")
            }
        }
    }

    func testBOSAndSpecialTokens() throws {
        let llama2 = try Tokenizer(path: Self.root + "/llama2_legacy/tokenizer.json")
        XCTAssertEqual(llama2.bosTokenID, 1)
        XCTAssertEqual(llama2.encode("hello", addBOS: true), [1] + llama2.encode("hello"))
        XCTAssertEqual(llama2.token(1), "<s>")
        let llama3 = try Tokenizer(path: Self.root + "/llama3_split/tokenizer.json")
        XCTAssertEqual(llama3.token(llama3.bosTokenID!), "<|begin_of_text|>")
        let smolShape = try Tokenizer(path: Self.root + "/bytelevel_digits/tokenizer.json")
        XCTAssertNil(smolShape.bosTokenID)
        XCTAssertEqual(smolShape.encode("hi", addBOS: true), smolShape.encode("hi"))
        let ids = smolShape.encode("<|im_start|>user\nhi<|im_end|>")
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(ids.last, 2)
        XCTAssertEqual(smolShape.decode(ids, skipSpecialTokens: true), "user\nhi")
    }

    func testLongTextMatchesWordByWordAndTheCacheChangesNothing() throws {
        // LLaMA-2's legacy layout has no pre-tokenizer: a whole paragraph is one BPE word (the heap path).
        let t = try Tokenizer(path: Self.root + "/llama2_legacy/tokenizer.json")
        let exp = try expected(Self.root + "/llama2_legacy/expected.json")
        let long = exp.cases.max { $0.text.count < $1.text.count }!
        XCTAssertGreaterThan(long.ids.count, 48)
        XCTAssertEqual(t.encode(long.text), long.ids)
        // The word cache: a text encoded by a tokenizer that has seen every word (warm) and by a fresh one
        // gives the same ids; every word of a repeated text after the first copy comes from the cache.
        let path = Self.root + "/bytelevel_digits/tokenizer.json"
        let text = String(repeating: exp.cases.map { $0.text }.joined(separator: "\n"), count: 100)
        let warm = try Tokenizer(path: path)
        let first = warm.encode(text)
        XCTAssertGreaterThan(first.count, 1000)
        XCTAssertEqual(warm.encode(text), first)
        XCTAssertEqual(try Tokenizer(path: path).encode(text), first)
    }

    /// ignore_merges (LLaMA-3): a word that is itself in the vocabulary is one token even when no merge path
    /// reaches it. Expected ids from Python `tokenizers` with the same edit.
    func testIgnoreMerges() throws {
        let dir = Self.root + "/llama3_split"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer.json"))) as! [String: Any]
        var model = json["model"] as! [String: Any]
        var vocab = model["vocab"] as! [String: Any]
        vocab["Ġzzyzx"] = 5000
        model["vocab"] = vocab
        json["model"] = model
        XCTAssertEqual(try Tokenizer(json: json, source: "edited").encode("a zzyzx b"), [68, 5000, 289])
        model["ignore_merges"] = false
        json["model"] = model
        XCTAssertEqual(try Tokenizer(json: json, source: "edited").encode("a zzyzx b"), [68, 224, 93, 93, 92, 93, 91, 289])
    }

    func testPatternRegexSemantics() throws {
        func pieces(_ pattern: String, _ text: String) throws -> [String] {
            let s = scalarValues(text)
            return try PatternRegex(pattern).matches(in: s).map { string(s[$0.0..<$0.1]) }
        }
        XCTAssertEqual(try pieces(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#, "I'm  here!! 42\n\n x"),
                       ["I", "'m", " ", " here", "!!", " 42", "\n\n", " x"])
        XCTAssertEqual(try pieces(#"(?i:'s|'ll)|\p{N}{1,3}"#, "'S'Ll 12345"), ["'S", "'Ll", "123", "45"])
        XCTAssertEqual(try pieces(#"a+?b|[^\s]{2}"#, "aab xyz"), ["aab", "xy"])
        XCTAssertEqual(try pieces(#"\s*[\r\n]+"#, "a  \n\nb"), ["  \n\n"])
        for unsupported in [#"(?<=a)b"#, #"a++"#, #"\bword"#, #"(a*)*"#, #"[a"#, #"\p{Greek}"#] {
            XCTAssertThrowsError(try PatternRegex(unsupported), unsupported)
        }
    }

    // MARK: - Bad input

    /// A copy of a fixture's tokenizer.json with `edit` applied, in a fresh folder.
    func editedTokenizer(_ edit: (inout [String: Any]) -> Void) throws -> String {
        let src = Self.root + "/llama2_legacy/tokenizer.json"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src))) as! [String: Any]
        edit(&json)
        let dir = temporaryDirectory("tok")
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        return dir + "/tokenizer.json"
    }

    func testBadInput() throws {
        let wordPiece = try editedTokenizer { j in
            var m = j["model"] as! [String: Any]
            m["type"] = "WordPiece"
            j["model"] = m
        }
        expectBadInput([wordPiece, "model.type 'WordPiece'", "expected BPE"]) { _ = try Tokenizer(path: wordPiece) }
        let unigram = try editedTokenizer { j in j["model"] = ["type": "Unigram", "vocab": [["a", -1.0]]] }
        expectBadInput([unigram, "'Unigram'"]) { _ = try Tokenizer(path: unigram) }
        let whitespace = try editedTokenizer { j in j["pre_tokenizer"] = ["type": "Whitespace"] }
        expectBadInput([whitespace, "pre_tokenizer type 'Whitespace'"]) { _ = try Tokenizer(path: whitespace) }
        let bert = try editedTokenizer { j in j["normalizer"] = ["type": "BertNormalizer"] }
        expectBadInput([bert, "normalizer type 'BertNormalizer'"]) { _ = try Tokenizer(path: bert) }
        let wpDecoder = try editedTokenizer { j in j["decoder"] = ["type": "WordPiece"] }
        expectBadInput([wpDecoder, "decoder type 'WordPiece'"]) { _ = try Tokenizer(path: wpDecoder) }
        let badMerge = try editedTokenizer { j in
            var m = j["model"] as! [String: Any]
            m["merges"] = [["▁", "no-such-token"]]
            j["model"] = m
        }
        expectBadInput([badMerge, "model.merges[0]", "no-such-token"]) { _ = try Tokenizer(path: badMerge) }
        let lookBehind = try editedTokenizer { j in
            j["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "(?<=a)b"], "behavior": "Isolated", "invert": false]
        }
        expectBadInput([lookBehind, "look-behind"]) { _ = try Tokenizer(path: lookBehind) }

        let notJSON = temporaryDirectory("tok") + "/tokenizer.json"
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: notJSON))
        expectBadInput([notJSON, "not a JSON object"]) { _ = try Tokenizer(path: notJSON) }

        let empty = temporaryDirectory("tok")
        expectBadInput([empty, "no tokenizer.json"]) { _ = try Tokenizer(model: empty) }
        expectBadInput(["/no/such/model", "not found"]) { _ = try Tokenizer(model: "/no/such/model") }
        expectBadInput(["/x/model.gguf", "not found"]) { _ = try Tokenizer(model: "/x/model.gguf") }
        expectBadInput(["/no/such/tokenizer.json", "file not found"]) { _ = try Tokenizer(path: "/no/such/tokenizer.json") }

        let text = temporaryDirectory("tok") + "/bad.txt"
        try Data([0x68, 0x69, 0x20, 0xC3, 0xA9, 0x20, 0xC3, 0x28, 0x41]).write(to: URL(fileURLWithPath: text))
        expectBadInput([text, "not valid UTF-8 at byte offset 6", "0xC3"]) { _ = try readUTF8Text(path: text) }
    }

    func testUTF8Validation() {
        XCTAssertNil(firstInvalidUTF8(Array("aé日👍".utf8)))
        XCTAssertEqual(firstInvalidUTF8([0x61, 0x80]), 1)  // lone continuation byte
        XCTAssertEqual(firstInvalidUTF8([0x61, 0xC0, 0x80]), 1)  // overlong
        XCTAssertEqual(firstInvalidUTF8([0xED, 0xA0, 0x80]), 0)  // surrogate
        XCTAssertEqual(firstInvalidUTF8([0xF4, 0x90, 0x80, 0x80]), 0)  // above U+10FFFF
        XCTAssertEqual(firstInvalidUTF8([0x61, 0x62, 0xE6, 0x97]), 2)  // truncated at the end
        XCTAssertEqual(firstInvalidUTF8([0xFF]), 0)
    }

    // MARK: - CLI

    func testTokenizeCommandWritesLittleEndianIds() throws {
        let dir = temporaryDirectory("tok")
        let text = "<|im_start|>user\nThe year 2024 had 366 days — café, 日本語, 👍🏽.<|im_end|>\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/in.txt"))
        let model = Self.root + "/bytelevel_digits"
        let r = try runProcess(binaryPath, ["tokenize", "--model", model, "--text", dir + "/in.txt", "--out", dir + "/ids.bin"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ids = try Tokenizer(model: model).encode(text)
        var expected = Data()
        for id in ids { withUnsafeBytes(of: id.littleEndian) { expected.append(contentsOf: $0) } }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/ids.bin")), expected)

        let summary = try runProcess(binaryPath, ["tokenize", "--model", model, "--text", dir + "/in.txt", "--json"])
        XCTAssertEqual(summary.status, 0, summary.stderr)
        let o = try JSONSerialization.jsonObject(with: Data(summary.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(o["tokens"] as? Int, ids.count)
        XCTAssertEqual(o["characters"] as? Int, text.unicodeScalars.count)
        XCTAssertNotNil(o["chars_per_second"] as? NSNumber)

        // --add-bos with a tokenizer that has one (LLaMA-2's <s> = 1).
        let bos = try runProcess(binaryPath, ["tokenize", "--model", Self.root + "/llama2_legacy", "--text", dir + "/in.txt", "--out", dir + "/bos.bin", "--add-bos"])
        XCTAssertEqual(bos.status, 0, bos.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/bos.bin")).prefix(4), Data([1, 0, 0, 0]))
    }

    func testTokenizeCommandBadInputExitsTwo() throws {
        let dir = temporaryDirectory("tok")
        try Data([0x6F, 0x6B, 0x0A, 0xE2, 0x82]).write(to: URL(fileURLWithPath: dir + "/bad.txt"))
        let model = Self.root + "/bytelevel_digits"
        let cases: [([String], [String])] = [
            (["tokenize", "--model", model, "--text", dir + "/bad.txt"], [dir + "/bad.txt", "byte offset 3"]),
            (["tokenize", "--model", dir, "--text", dir + "/bad.txt"], [dir, "no tokenizer.json"]),
            (["tokenize", "--model", dir + "/m.gguf", "--text", dir + "/bad.txt"], [dir + "/m.gguf", "not found"]),
            (["tokenize", "--model", model, "--text", dir + "/missing.txt"], [dir + "/missing.txt", "not found"]),
            (["tokenize", "--model", model, "--text", dir + "/bad.txt", "--add-bos"], ["--add-bos", "no BOS"]),
        ]
        for (args, needles) in cases {
            let r = try runProcess(binaryPath, args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            for n in needles { XCTAssertTrue(r.stderr.contains(n), "'\(r.stderr)' lacks '\(n)'") }
        }
    }
}

