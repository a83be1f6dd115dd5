// tokenizer.json `pre_tokenizer`: cuts normalized text into words that BPE then encodes one by one (ByteLevel
// with the GPT-2 regex, Split with a model's own regex, Digits, Metaspace, or a Sequence of them). Each step
// applies to every piece the previous step produced, as `tokenizers`' PreTokenizedString::split does.
import GradMapSupport

/// A piece of text being pre-tokenized. `atStart`: it begins at offset 0 of the original text (Metaspace's
/// prepend_scheme "first" prepends "▁" only there).
struct Piece {
    var text: [UInt32]
    var atStart: Bool
}

/// `tokenizers`' SplitDelimiterBehavior.
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// Ranges of a text of `count` scalars cut at `matches` (sorted, non-overlapping), empty ones dropped.
    func ranges(count: Int, matches: [(Int, Int)], invert: Bool = false) -> [Range<Int>] {
        if count == 0 { return [] }
        var segments: [(Int, Int, Bool)] = []
        var prev = 0
        for (s, e) in matches {
            if prev != s { segments.append((prev, s, invert)) }
            segments.append((s, e, !invert))
            prev = e
        }
        if prev != count { segments.append((prev, count, invert)) }
        var out: [(Int, Int)] = []
        switch self {
        case .isolated:
            out = segments.map { ($0.0, $0.1) }
        case .removed:
            out = segments.filter { !$0.2 }.map { ($0.0, $0.1) }
        case .contiguous:
            var previous = false
            for (s, e, m) in segments {
                if m == previous, !out.isEmpty { out[out.count - 1].1 = e } else { out.append((s, e)) }
                previous = m
            }
        case .mergedWithPrevious:
            var previous = false
            for (s, e, m) in segments {
                if m && !previous, !out.isEmpty { out[out.count - 1].1 = e } else { out.append((s, e)) }
                previous = m
            }
        case .mergedWithNext:
            var previous = false
            for (s, e, m) in segments.reversed() {
                if m && !previous, !out.isEmpty { out[out.count - 1].0 = s } else { out.append((s, e)) }
                previous = m
            }
            out.reverse()
        }
        return out.filter { $0.0 < $0.1 }.map { $0.0..<$0.1 }
    }
}

enum PrependScheme: String, Sendable { case first, always, never }

indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: UInt32, scheme: PrependScheme, split: Bool)

    static let supported = "ByteLevel, Split, Digits, Metaspace or Sequence"

    /// GPT-2's pattern, which ByteLevel with use_regex applies.
    static let gpt2 = try! PatternRegex(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)

    init(_ raw: [String: Any], source: String) throws {
        let type = raw["type"] as? String ?? "(missing)"
        switch type {
        case "Sequence":
            guard let list = raw["pretokenizers"] as? [[String: Any]] else {
                throw bad("\(source): pre_tokenizer Sequence needs a list \"pretokenizers\", got \(kind(raw["pretokenizers"]))")
            }
            self = .sequence(try list.map { try PreTokenizer($0, source: source) })
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: raw["add_prefix_space"] as? Bool ?? true, useRegex: raw["use_regex"] as? Bool ?? true)
        case "Split":
            let name = raw["behavior"] as? String ?? "(missing)"
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw bad("\(source): pre_tokenizer Split behavior '\(shown(name))' is not supported; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous")
            }
            self = .split(try TextPattern(raw["pattern"], source: source, key: "pre_tokenizer Split pattern"), behavior,
                          invert: raw["invert"] as? Bool ?? false)
        case "Digits":
            self = .digits(individual: raw["individual_digits"] as? Bool ?? false)
        case "Metaspace":
            let rep = scalarValues(raw["replacement"] as? String ?? "\u{2581}")
            guard rep.count == 1 else { throw bad("\(source): pre_tokenizer Metaspace replacement must be one character, got \(rep.count)") }
            var scheme = PrependScheme.always
            if let s = raw["prepend_scheme"] as? String {
                guard let p = PrependScheme(rawValue: s) else {
                    throw bad("\(source): pre_tokenizer Metaspace prepend_scheme '\(shown(s))' is not supported; expected first, always or never")
                }
                scheme = p
            } else if let add = raw["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never  // files from before prepend_scheme existed
            }
            self = .metaspace(replacement: rep[0], scheme: scheme, split: raw["split"] as? Bool ?? true)
        default:
            throw bad("\(source): pre_tokenizer type '\(shown(type))' is not supported; expected \(PreTokenizer.supported)")
        }
    }

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let list):
            var p = pieces
            for step in list { p = step.apply(p) }
            return p
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [Piece] = []
            out.reserveCapacity(pieces.count * 4)
            var bytes: [UInt8] = []
            for var piece in pieces {
                if addPrefixSpace && piece.text.first != 32 { piece.text.insert(32, at: 0) }
                let ranges = useRegex
                    ? SplitBehavior.isolated.ranges(count: piece.text.count, matches: PreTokenizer.gpt2.matches(in: piece.text))
                    : (piece.text.isEmpty ? [] : [0..<piece.text.count])
                for r in ranges {
                    // Every UTF-8 byte becomes its printable stand-in character.
                    bytes.removeAll(keepingCapacity: true)
                    for c in piece.text[r] { utf8Bytes(c, into: &bytes) }
                    out.append(Piece(text: bytes.map { ByteLevelMap.byteToScalar[Int($0)] }, atStart: piece.atStart && r.lowerBound == 0))
                }
            }
            return out
        case .split(let pattern, let behavior, let invert):
            return split(pieces) { behavior.ranges(count: $0.count, matches: pattern.matches(in: $0), invert: invert) }
        case .digits(let individual):
            let behavior: SplitBehavior = individual ? .isolated : .contiguous
            return split(pieces) { text in
                var m: [(Int, Int)] = []
                for (i, c) in text.enumerated() where isNumeric(c) { m.append((i, i + 1)) }
                return behavior.ranges(count: text.count, matches: m)
            }
        case .metaspace(let replacement, let scheme, let doSplit):
            var out: [Piece] = []
            for var piece in pieces {
                for i in piece.text.indices where piece.text[i] == 32 { piece.text[i] = replacement }
                let prepend = scheme == .always || (scheme == .first && piece.atStart)
                if prepend && piece.text.first != replacement { piece.text.insert(replacement, at: 0) }
                if !doSplit {
                    if !piece.text.isEmpty { out.append(piece) }
                    continue
                }
                var m: [(Int, Int)] = []
                for (i, c) in piece.text.enumerated() where c == replacement { m.append((i, i + 1)) }
                for r in SplitBehavior.mergedWithNext.ranges(count: piece.text.count, matches: m) {
                    out.append(Piece(text: Array(piece.text[r]), atStart: piece.atStart && r.lowerBound == 0))
                }
            }
            return out
        }
    }

    private func split(_ pieces: [Piece], _ cut: ([UInt32]) -> [Range<Int>]) -> [Piece] {
        var out: [Piece] = []
        out.reserveCapacity(pieces.count)
        for piece in pieces {
            let ranges = cut(piece.text)
            if ranges.count == 1 && ranges[0].count == piece.text.count {
                out.append(piece)
                continue
            }
            for r in ranges { out.append(Piece(text: Array(piece.text[r]), atStart: piece.atStart && r.lowerBound == 0)) }
        }
        return out
    }
}
