// The BPE model of a tokenizer.json: vocabulary, merges by rank, byte fallback and the unknown token, as
// `tokenizers`' models/bpe does it. Symbols are token ids from the start (one per character), so merging is
// integer work: a pair (left, right) looks up (rank, merged id) in an open-addressing table.
import Foundation
import GradMapSupport

/// (left id, right id) → (rank, merged id), packed into UInt64s; linear probing.
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: MergeTable.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask }

    /// A later merge of the same pair replaces the earlier one, as a Rust HashMap built from the list does.
    mutating func insert(_ a: UInt32, _ b: UInt32, rank: UInt32, merged: UInt32) {
        let key = UInt64(a) << 32 | UInt64(b)
        var i = slot(key)
        while keys[i] != MergeTable.empty && keys[i] != key { i = (i + 1) & mask }
        keys[i] = key
        values[i] = UInt64(rank) << 32 | UInt64(merged)
    }

    /// rank << 32 | merged id, or UInt64.max when the pair does not merge.
    @inline(__always)
    func lookup(_ a: UInt32, _ b: UInt32) -> UInt64 {
        let key = UInt64(a) << 32 | UInt64(b)
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == MergeTable.empty { return UInt64.max }
            i = (i + 1) & mask
        }
    }
}

struct BPEModel: Sendable {
    var vocab: [String: UInt32] = [:]
    /// id → token, for decoding (nil for ids the vocabulary skips).
    var tokens: [String?] = []
    /// Single-character tokens by scalar value (the BMP directly, the rest in a dictionary).
    private var charIDs = [UInt32](repeating: UInt32.max, count: 0x10000)
    private var astralCharIDs: [UInt32: UInt32] = [:]
    private var merges = MergeTable(capacity: 1)
    /// <0x00>..<0xFF> ids when byte_fallback is set (UInt32.max where the vocabulary lacks one).
    var byteFallbackIDs: [UInt32]? = nil
    var byteFallback = false
    var unkID: UInt32? = nil
    var fuseUnk = false
    var ignoreMerges = false

    /// Ids accepted, vocabulary and added tokens alike: far above any real vocabulary (ModelConfig.maxDimension).
    static let maxID = 1 << 21

    init(_ model: [String: Any], source: String) throws {
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "(missing)")
        guard type == "BPE" else {
            throw bad("\(source): model.type '\(shown(type))' is not supported; expected BPE (byte-level or SentencePiece-style)")
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else {
            throw bad("\(source): model.vocab must be an object of token → id, got \(kind(model["vocab"]))")
        }
        var maxID = -1
        for (token, value) in vocabObject {
            guard let n = jsonInt(value), let id = UInt32(exactly: n) else {
                throw bad("\(source): model.vocab[\(token.debugDescription)] must be a non-negative integer id, got \(shown(value))")
            }
            // The id → token table is as long as the largest id: a stray huge id must not allocate gigabytes.
            guard n < BPEModel.maxID else {
                throw bad("\(source): model.vocab[\(token.debugDescription)] id \(n) is past the limit of \(BPEModel.maxID) ids")
            }
            vocab[token] = id
            maxID = max(maxID, Int(id))
        }
        tokens = [String?](repeating: nil, count: maxID + 1)
        for (token, id) in vocab {
            tokens[Int(id)] = token
            let scalars = token.unicodeScalars
            if scalars.count == 1, let c = scalars.first?.value {
                if c < 0x10000 { charIDs[Int(c)] = id } else { astralCharIDs[c] = id }
            }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key] as? String, !s.isEmpty {
                throw bad("\(source): model.\(key) \(s.debugDescription) is not supported; expected null or \"\"")
            }
        }
        if let d = model["dropout"] as? NSNumber, d.doubleValue > 0 {
            throw bad("\(source): model.dropout \(d) is not supported; expected null (deterministic encoding)")
        }
        byteFallback = model["byte_fallback"] as? Bool ?? false
        fuseUnk = model["fuse_unk"] as? Bool ?? false
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
        if let unk = model["unk_token"] as? String { unkID = vocab[unk] }
        if byteFallback {
            byteFallbackIDs = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] ?? UInt32.max }
        }
        try loadMerges(model["merges"], source: source)
    }

    private mutating func loadMerges(_ raw: Any?, source: String) throws {
        guard let list = raw as? [Any] else {
            throw bad("\(source): model.merges must be a list of \"a b\" strings or [a, b] pairs, got \(kind(raw))")
        }
        merges = MergeTable(capacity: list.count)
        for (rank, entry) in list.enumerated() {
            var pair: [String]
            if let s = entry as? String {
                pair = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let a = entry as? [Any], let strings = a as? [String] {
                pair = strings
            } else {
                throw bad("\(source): model.merges[\(rank)] must be \"a b\" or [a, b], got \(shown(entry))")
            }
            guard pair.count == 2 else {
                throw bad("\(source): model.merges[\(rank)] must name two tokens, got \(pair.count) (\(shown(entry)))")
            }
            guard let a = vocab[pair[0]], let b = vocab[pair[1]] else {
                let missing = vocab[pair[0]] == nil ? pair[0] : pair[1]
                throw bad("\(source): model.merges[\(rank)] uses \(missing.debugDescription), which is not in model.vocab")
            }
            guard let merged = vocab[pair[0] + pair[1]] else {
                throw bad("\(source): model.merges[\(rank)] makes \((pair[0] + pair[1]).debugDescription), which is not in model.vocab")
            }
            merges.insert(a, b, rank: UInt32(rank), merged: merged)
        }
    }

    @inline(__always)
    func charID(_ c: UInt32) -> UInt32? {
        if c < 0x10000 {
            let id = charIDs[Int(c)]
            return id == UInt32.max ? nil : id
        }
        return astralCharIDs[c]
    }

    /// Token ids of one pre-tokenized word, appended to `out`.
    func tokenize(_ word: [UInt32], into out: inout [UInt32]) {
        if ignoreMerges, let id = wholeWordID(word) {
            out.append(id)
            return
        }
        // One symbol per character; unknown characters go to <0xNN> bytes or to the unknown token.
        var symbols: [UInt32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnk = false
        var bytes: [UInt8] = []
        for c in word {
            if let id = charID(c) {
                if pendingUnk, let unk = unkID { symbols.append(unk); pendingUnk = false }
                symbols.append(id)
                continue
            }
            if let fallback = byteFallbackIDs {
                // As in `tokenizers`, a pending unknown token is not flushed first, and a character falls back
                // only when every one of its bytes has a token.
                bytes.removeAll(keepingCapacity: true)
                utf8Bytes(c, into: &bytes)
                if bytes.allSatisfy({ fallback[Int($0)] != UInt32.max }) {
                    for b in bytes { symbols.append(fallback[Int(b)]) }
                    continue
                }
            }
            guard let unk = unkID else { continue }  // no unknown token: the character is dropped
            if pendingUnk && !fuseUnk { symbols.append(unk) }
            pendingUnk = true
        }
        if pendingUnk, let unk = unkID { symbols.append(unk) }
        if symbols.count > 48 { mergeLong(&symbols) } else { mergeShort(&symbols) }
        out.append(contentsOf: symbols)
    }

    private func wholeWordID(_ word: [UInt32]) -> UInt32? {
        if word.count == 1 { return charID(word[0]) }
        return vocab[string(word)]
    }

    /// Repeatedly merges the lowest-ranked adjacent pair (the leftmost of equals): quadratic, fast for words.
    private func mergeShort(_ symbols: inout [UInt32]) {
        var n = symbols.count
        while n > 1 {
            var best = UInt64.max, at = -1
            for i in 0..<(n - 1) {
                let m = merges.lookup(symbols[i], symbols[i + 1])
                if m < best { best = m; at = i }  // ranks are unique per pair, so the first minimum is the leftmost
            }
            if at < 0 { break }
            symbols[at] = UInt32(truncatingIfNeeded: best)
            symbols.remove(at: at + 1)
            n -= 1
        }
    }

    /// The same merges for long words (a whole paragraph when there is no pre-tokenizer): a heap of
    /// (rank, position) over a linked list, as `tokenizers`' Word::merge_all. An entry is stale when the pair at
    /// its position has changed since; a position's pair only changes by growing, so rank equality detects it.
    private func mergeLong(_ symbols: inout [UInt32]) {
        let n = symbols.count
        var next = [Int32](repeating: -1, count: n), prev = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            next[i] = i + 1 < n ? Int32(i + 1) : -1
            prev[i] = Int32(i - 1)
        }
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            let m = merges.lookup(symbols[i], symbols[i + 1])
            if m != UInt64.max { heap.push((m & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
        }
        while let top = heap.pop() {
            let rank = top >> 32, i = Int(top & 0xFFFF_FFFF)
            guard alive[i], next[i] >= 0 else { continue }
            let j = Int(next[i])
            let m = merges.lookup(symbols[i], symbols[j])
            guard m != UInt64.max, m >> 32 == rank else { continue }
            symbols[i] = UInt32(truncatingIfNeeded: m)
            alive[j] = false
            next[i] = next[j]
            if next[j] >= 0 { prev[Int(next[j])] = Int32(i) }
            if prev[i] >= 0 {
                let p = Int(prev[i])
                let mp = merges.lookup(symbols[p], symbols[i])
                if mp != UInt64.max { heap.push((mp & 0xFFFF_FFFF_0000_0000) | UInt64(p)) }
            }
            if next[i] >= 0 {
                let mn = merges.lookup(symbols[i], symbols[Int(next[i])])
                if mn != UInt64.max { heap.push((mn & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
            }
        }
        var out: [UInt32] = []
        out.reserveCapacity(n)
        for i in 0..<n where alive[i] { out.append(symbols[i]) }
        symbols = out
    }
}

/// A binary min-heap of UInt64 (rank << 32 | position: lowest rank first, then leftmost).
struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ v: UInt64) {
        items.append(v)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p] <= items[i] { break }
            items.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> UInt64? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l] < items[m] { m = l }
                if r < n && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// A JSON value's kind, for error messages.
func kind(_ v: Any?) -> String {
    switch v {
    case nil, is NSNull: return "null"
    case is String: return "a string"
    case is [Any]: return "a list"
    case is [String: Any]: return "an object"
    case is Bool: return "a boolean"
    case is NSNumber: return "a number"
    default: return "\(type(of: v!))"
    }
}
