// Deterministic input mutations: byte-level ones for every format (bit flips, interesting values, truncation,
// extension, chunk duplication and deletion, splicing with another seed) and structure-aware ones where they are
// cheap: a JSON value rewritten in place (config.json, tokenizer.json, the index, the safetensors header) and a
// GGUF header field (count, length, type, dims, offset, metadata integer) overwritten.
import Foundation
import GradMapSupport

/// The fuzzer's draws from GradMapCore's seeded generator, so that a run is reproduced by its --seed.
typealias FuzzRNG = SplitMix64

extension SplitMix64 {
    /// Uniform in 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { nextUnit() < p }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// A GGUF header field of a seed: where it is, how wide, and what it holds (the mutation picks values by kind).
struct GGUFField {
    enum Kind { case version, count, length, type, dims, offset, value }
    let offset: Int
    let width: Int
    let kind: Kind
}

/// Walks a valid GGUF's header and lists its fields; nil when the seed does not parse (then only byte mutations).
func ggufFields(_ b: [UInt8]) -> [GGUFField]? {
    var pos = 0
    var fields: [GGUFField] = []
    func u(_ width: Int) -> UInt64? {
        guard pos + width <= b.count else { return nil }
        var v: UInt64 = 0
        for i in 0..<width { v |= UInt64(b[pos + i]) << (8 * UInt64(i)) }
        pos += width
        return v
    }
    func field(_ width: Int, _ kind: GGUFField.Kind) -> UInt64? {
        fields.append(GGUFField(offset: pos, width: width, kind: kind))
        return u(width)
    }
    func string() -> Bool {
        guard let n = field(8, .length), n <= UInt64(b.count - pos) else { return false }
        pos += Int(n)
        return true
    }
    let sizes: [UInt64: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
    func value(_ type: UInt64, depth: Int) -> Bool {
        if let w = sizes[type] { return field(w, .value) != nil }
        if type == 8 { return string() }
        guard type == 9, depth < 4, let t = field(4, .type), let n = field(8, .length), n <= UInt64(b.count) else { return false }
        for _ in 0..<n where !value(t, depth: depth + 1) { return false }
        return true
    }
    guard b.count >= 24, b[0..<4].elementsEqual(Array("GGUF".utf8)) else { return nil }
    pos = 4
    guard field(4, .version) != nil, let tensors = field(8, .count), let kvs = field(8, .count),
          tensors < 10_000, kvs < 10_000 else { return nil }
    for _ in 0..<kvs {
        guard string(), let t = field(4, .type), value(t, depth: 0) else { return nil }
    }
    for _ in 0..<tensors {
        guard string(), let nDims = field(4, .dims), nDims <= 4 else { return nil }
        for _ in 0..<nDims where field(8, .dims) == nil { return nil }
        guard field(4, .type) != nil, field(8, .offset) != nil else { return nil }
    }
    return fields
}

struct Mutator {
    var rng: FuzzRNG
    /// Largest input made (an extension past it is cut back).
    static let maxBytes = 256 * 1024

    static let interestingBytes: [UInt8] = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x2d, 0x30, 0x39, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x5c]
    /// Lengths and counts near the limits: 2^31, 2^32, 2^63 and their neighbours.
    static let interestingWords: [UInt64] = [
        0, 1, 2, 7, 8, 0x7f, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0001,
        0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_fff0, 100_000_000, 100_000_001,
    ]

    // MARK: - Byte level

    mutating func byteMutation(_ input: [UInt8], splice other: [UInt8]) -> [UInt8] {
        var b = input
        let n = b.count
        switch rng.below(10) {
        case 0 where n > 0:  // bit flip
            let i = rng.below(n)
            b[i] ^= 1 << UInt8(rng.below(8))
        case 1 where n > 0:  // interesting byte
            b[rng.below(n)] = rng.pick(Mutator.interestingBytes)
        case 2 where n > 0:  // interesting 2-, 4- or 8-byte little-endian value, or one near the input's length
            let width = rng.pick([2, 4, 8])
            var v = rng.pick(Mutator.interestingWords)
            if rng.chance(0.3) { v = UInt64(max(0, n - 8 + rng.below(17) - 8)) }
            let at = rng.below(n)
            for k in 0..<width where at + k < n { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        case 3 where n > 0:  // truncation, often near the start (headers) or the end
            let cut = rng.chance(0.5) ? rng.below(min(n, 64)) : rng.below(n)
            b = Array(b.prefix(rng.chance(0.5) ? cut : n - 1 - rng.below(min(n, 16))))
        case 4:  // extension with zeros, 0xff or random bytes
            let extra = rng.pick([1, 3, 4, 8, 100, 4096])
            let fill = rng.below(3)
            b += (0..<extra).map { _ in fill == 0 ? 0 : fill == 1 ? 0xff : UInt8(truncatingIfNeeded: rng.next()) }
        case 5 where n > 1:  // duplicate a chunk in place
            let (s, len) = chunk(n)
            b.insert(contentsOf: b[s..<(s + len)], at: rng.below(n))
        case 6 where n > 1:  // delete a chunk
            let (s, len) = chunk(n)
            b.removeSubrange(s..<(s + len))
        case 7 where n > 0:  // random bytes overwritten
            let (s, len) = chunk(n)
            for i in s..<(s + len) { b[i] = UInt8(truncatingIfNeeded: rng.next()) }
        case 8 where n > 0 && !other.isEmpty:  // splice: this input's head, another seed's tail
            let cut = rng.below(n)
            let from = rng.below(other.count)
            b = Array(b[..<cut]) + Array(other[from...])
        default:  // an increment or decrement of one byte
            if n > 0 { let i = rng.below(n); b[i] = rng.chance(0.5) ? b[i] &+ 1 : b[i] &- 1 }
        }
        if b.count > Mutator.maxBytes { b.removeLast(b.count - Mutator.maxBytes) }
        return b
    }

    /// A random (start, length) inside n bytes, mostly short.
    private mutating func chunk(_ n: Int) -> (Int, Int) {
        let s = rng.below(n)
        let len = 1 + rng.below(min(n - s, rng.chance(0.8) ? 16 : 4096))
        return (s, len)
    }

    // MARK: - JSON

    /// One value of a parsed JSON document rewritten (or deleted), then serialized; nil when it does not parse.
    mutating func jsonMutation(_ input: [UInt8]) -> [UInt8]? {
        guard let doc = try? JSONSerialization.jsonObject(with: Data(input), options: [.fragmentsAllowed]) else { return nil }
        var strings: [String] = []
        let count = JSONWalk.count(doc, strings: &strings)
        var walk = JSONWalk(target: rng.below(max(count, 1)), strings: strings)
        let out = walk.rewrite(doc, rng: &rng) ?? NSNull()
        guard let data = try? JSONSerialization.data(withJSONObject: out, options: [.fragmentsAllowed]) else { return nil }
        return [UInt8](data)
    }

    // MARK: - Formats

    /// The safetensors header as JSON, or its 8-byte length, rewritten.
    mutating func safetensorsMutation(_ input: [UInt8]) -> [UInt8]? {
        guard input.count >= 8 else { return nil }
        let n = input[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        var header: [UInt8]
        var rest: [UInt8]
        if n <= UInt64(input.count - 8) {
            header = Array(input[8..<(8 + Int(n))])
            rest = Array(input[(8 + Int(n))...])
        } else {
            header = []
            rest = Array(input[8...])
        }
        var length = UInt64(header.count)
        if rng.chance(0.7), let h = jsonMutation(header) {
            header = h
            length = UInt64(h.count)
            if rng.chance(0.2) { length &+= UInt64(bitPattern: Int64(rng.below(17) - 8)) }
        } else {
            length = rng.chance(0.5) ? rng.pick(Mutator.interestingWords) : n &+ UInt64(bitPattern: Int64(rng.below(33) - 16))
        }
        if rng.chance(0.1) { rest.removeLast(min(rest.count, 1 + rng.below(64))) }
        var out: [UInt8] = []
        for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(k)))) }
        return out + header + rest
    }

    /// One GGUF header field overwritten with a value chosen for its kind.
    mutating func ggufMutation(_ input: [UInt8], fields: [GGUFField]) -> [UInt8]? {
        guard !fields.isEmpty else { return nil }
        let f = rng.pick(fields)
        guard f.offset + f.width <= input.count else { return nil }
        var old: UInt64 = 0
        for k in 0..<f.width { old |= UInt64(input[f.offset + k]) << (8 * UInt64(k)) }
        let v: UInt64
        switch f.kind {
        case .version: v = rng.pick([0, 1, 2, 3, 4, 0xffff_ffff])
        case .type: v = rng.chance(0.7) ? UInt64(rng.below(42)) : rng.pick([0xffff_ffff, 0x8000_0000, 13, 40])
        case .dims where f.width == 4: v = UInt64(rng.pick([0, 1, 2, 3, 4, 5, 0xffff_ffff]))
        case .offset:
            v = rng.pick([0, old &+ 32, old &- 32, old &+ 1, old &* 2, 0x7fff_ffff_ffff_ffe0, 0xffff_ffff_ffff_ffe0, UInt64(input.count)])
        case .count, .length, .dims, .value:
            v = rng.chance(0.5) ? rng.pick(Mutator.interestingWords)
                : rng.pick([old &+ 1, old &- 1, old &* 2, old / 2, old &+ 1000, UInt64(input.count), UInt64(input.count - f.offset)])
        }
        var b = input
        for k in 0..<f.width { b[f.offset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        return b
    }

    /// A uint32 token id overwritten with one at or past the edges (vocabulary 96), or the length made odd.
    mutating func tokensMutation(_ input: [UInt8]) -> [UInt8]? {
        guard input.count >= 4 else { return nil }
        var b = input
        if rng.chance(0.2) { return Array(b.prefix(input.count - 1 - rng.below(3))) }
        let v: UInt32 = rng.pick([0, 95, 96, 97, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff])
        let at = 4 * rng.below(input.count / 4)
        for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
        return b
    }
}

/// Finds the `target`-th value of a JSON document (depth first) and rewrites it.
struct JSONWalk {
    var target: Int
    /// Every string in the document: rewrites reuse them (a tensor mapped to another shard, a merge of other tokens).
    let strings: [String]
    private var seen = 0

    init(target: Int, strings: [String]) {
        self.target = target
        self.strings = strings
    }

    static func count(_ v: Any, strings: inout [String]) -> Int {
        if let s = v as? String, strings.count < 4096 { strings.append(s) }
        if let a = v as? [Any] { return 1 + a.reduce(0) { $0 + count($1, strings: &strings) } }
        if let o = v as? [String: Any] {
            return 1 + o.keys.sorted().reduce(0) { n, k in
                if strings.count < 4096 { strings.append(k) }
                return n + count(o[k]!, strings: &strings)
            }
        }
        return 1
    }

    /// The value with the target rewritten; nil means "delete this value".
    mutating func rewrite(_ v: Any, rng: inout FuzzRNG) -> Any? {
        let here = seen
        seen += 1
        if here == target { return replacement(v, rng: &rng) }
        if var a = v as? [Any] {
            var i = 0
            while i < a.count {
                if let x = rewrite(a[i], rng: &rng) { a[i] = x; i += 1 } else { a.remove(at: i) }
            }
            return a
        }
        if var o = v as? [String: Any] {
            for k in o.keys.sorted() {
                o[k] = rewrite(o[k]!, rng: &rng)
            }
            return o
        }
        return v
    }

    static var numbers: [Any] { [
        0, -1, 1, 2, 3, 7, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000, 9_007_199_254_740_993,
        Int64.max, Int64.min, UInt64.max, 0.5, -0.0, 1e300, -1e300, 1e-300, 1.5,
    ] }

    private func replacement(_ v: Any, rng: inout FuzzRNG) -> Any? {
        switch rng.below(8) {
        case 0: return nil
        case 1: return rng.pick(JSONWalk.numbers)
        case 2:
            if let n = v as? NSNumber, !(v is Bool) {
                let d = n.doubleValue
                return rng.pick([d + 1, d - 1, -d, d * 2, d / 2, d * 1e6] as [Any])
            }
            return rng.pick(JSONWalk.numbers)
        case 3:
            if !strings.isEmpty, rng.chance(0.7) { return rng.pick(strings) }
            return rng.pick(["", "x", "F32", "BF16", "I64", "Q4", "../model.safetensors", "model.safetensors", "\u{0}", "é",
                             String(repeating: "a", count: 5000), "BPE", "WordPiece", "llama", "qwen2", "gpt2"])
        case 4: return rng.pick([true, false, NSNull()] as [Any])
        case 5:
            if let a = v as? [Any], !a.isEmpty {
                var b = a
                let i = rng.below(a.count)
                if rng.chance(0.5) { b.insert(a[i], at: rng.below(a.count + 1)) } else { b.swapAt(i, rng.below(a.count)) }
                return b
            }
            return [v]
        case 6:
            if let o = v as? [String: Any], let k = o.keys.sorted().first {
                var p = o
                p[k + "_"] = p.removeValue(forKey: k)
                return p
            }
            return ["x": v]
        default:
            if let s = v as? String { return String(s.dropLast()) + (rng.chance(0.5) ? "\u{2581}" : " ") }
            return [] as [Any]
        }
    }
}
