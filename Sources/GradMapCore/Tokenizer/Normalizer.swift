// tokenizer.json `normalizer`: the text transformations applied to each stretch of text between added tokens,
// before pre-tokenization (LLaMA-2's Prepend "▁" + Replace " " → "▁", Qwen2's NFC, ...).
import Foundation
import GradMapSupport

/// A `pattern` of Split, Replace: {"String": literal} or {"Regex": pattern}.
enum TextPattern: Sendable {
    case literal([UInt32])
    case regex(PatternRegex)

    init(_ raw: Any?, source: String, key: String) throws {
        if let o = raw as? [String: Any], let s = o["String"] as? String {
            self = .literal(scalarValues(s))
        } else if let o = raw as? [String: Any], let r = o["Regex"] as? String {
            do { self = .regex(try PatternRegex(r)) } catch let e as GradMapError { throw bad("\(source): \(key): \(e)") }
        } else if let s = raw as? String {
            self = .literal(scalarValues(s))
        } else {
            throw bad("\(source): \(key) must be {\"String\": ...} or {\"Regex\": ...}, got \(kind(raw))")
        }
    }

    /// Non-overlapping (start, end) matches, leftmost first.
    func matches(in text: [UInt32]) -> [(Int, Int)] {
        switch self {
        case .regex(let r): return r.matches(in: text)
        case .literal(let p):
            guard !p.isEmpty, text.count >= p.count else { return [] }
            var out: [(Int, Int)] = []
            var i = 0
            while i + p.count <= text.count {
                if text[i] == p[0] && text[i..<(i + p.count)].elementsEqual(p) {
                    out.append((i, i + p.count))
                    i += p.count
                } else {
                    i += 1
                }
            }
            return out
        }
    }

    func replacingMatches(in text: [UInt32], with content: [UInt32]) -> [UInt32] {
        let found = matches(in: text)
        if found.isEmpty { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var prev = 0
        for (s, e) in found {
            out.append(contentsOf: text[prev..<s])
            out.append(contentsOf: content)
            prev = e
        }
        out.append(contentsOf: text[prev...])
        return out
    }
}

indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case prepend([UInt32])
    case replace(TextPattern, [UInt32])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)

    static let supported = "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase or Strip"

    init(_ raw: [String: Any], source: String) throws {
        let type = raw["type"] as? String ?? "(missing)"
        switch type {
        case "Sequence":
            guard let list = raw["normalizers"] as? [[String: Any]] else {
                throw bad("\(source): normalizer Sequence needs a list \"normalizers\", got \(kind(raw["normalizers"]))")
            }
            self = .sequence(try list.map { try Normalizer($0, source: source) })
        case "Prepend":
            guard let p = raw["prepend"] as? String else { throw bad("\(source): normalizer Prepend needs a string \"prepend\"") }
            self = .prepend(scalarValues(p))
        case "Replace":
            guard let content = raw["content"] as? String else { throw bad("\(source): normalizer Replace needs a string \"content\"") }
            self = .replace(try TextPattern(raw["pattern"], source: source, key: "normalizer Replace pattern"), scalarValues(content))
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Strip":
            self = .strip(left: raw["strip_left"] as? Bool ?? true, right: raw["strip_right"] as? Bool ?? true)
        default:
            throw bad("\(source): normalizer type '\(shown(type))' is not supported; expected \(Normalizer.supported)")
        }
    }

    func apply(_ text: [UInt32]) -> [UInt32] {
        switch self {
        case .sequence(let list):
            var t = text
            for n in list { t = n.apply(t) }
            return t
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .replace(let pattern, let content):
            return pattern.replacingMatches(in: text, with: content)
        case .nfc, .nfd, .nfkc, .nfkd:
            // ASCII is invariant under every normal form.
            if text.allSatisfy({ $0 < 0x80 }) { return text }
            let s = string(text)
            switch self {
            case .nfc: return scalarValues(s.precomposedStringWithCanonicalMapping)
            case .nfd: return scalarValues(s.decomposedStringWithCanonicalMapping)
            case .nfkc: return scalarValues(s.precomposedStringWithCompatibilityMapping)
            default: return scalarValues(s.decomposedStringWithCompatibilityMapping)
            }
        case .lowercase:
            return scalarValues(string(text).lowercased())
        case .strip(let left, let right):
            var lo = 0, hi = text.count
            if left { while lo < hi && isWhiteSpace(text[lo]) { lo += 1 } }
            if right { while hi > lo && isWhiteSpace(text[hi - 1]) { hi -= 1 } }
            return Array(text[lo..<hi])
        }
    }
}
