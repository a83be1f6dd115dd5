// tokenizer.json `decoder`: token strings back to text (ByteLevel bytes, SentencePiece's "▁" and <0xNN>
// bytes), each step mapping the list of token strings as `tokenizers`' decode_chain does, joined at the end.
import GradMapSupport

indirect enum Decoder: Sendable {
    case sequence([Decoder])
    case byteLevel
    case replace(TextPattern, [UInt32])
    case byteFallback
    case fuse
    case strip(content: UInt32, start: Int, stop: Int)
    case metaspace(replacement: UInt32, scheme: PrependScheme)

    static let supported = "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace or Sequence"

    init(_ raw: [String: Any], source: String) throws {
        let type = raw["type"] as? String ?? "(missing)"
        switch type {
        case "Sequence":
            guard let list = raw["decoders"] as? [[String: Any]] else {
                throw bad("\(source): decoder Sequence needs a list \"decoders\", got \(kind(raw["decoders"]))")
            }
            self = .sequence(try list.map { try Decoder($0, source: source) })
        case "ByteLevel": self = .byteLevel
        case "Replace":
            guard let content = raw["content"] as? String else { throw bad("\(source): decoder Replace needs a string \"content\"") }
            self = .replace(try TextPattern(raw["pattern"], source: source, key: "decoder Replace pattern"), scalarValues(content))
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            let content = scalarValues(raw["content"] as? String ?? " ")
            guard content.count == 1 else { throw bad("\(source): decoder Strip content must be one character, got \(content.count)") }
            self = .strip(content: content[0], start: jsonInt(raw["start"]) ?? 0, stop: jsonInt(raw["stop"]) ?? 0)
        case "Metaspace":
            let rep = scalarValues(raw["replacement"] as? String ?? "\u{2581}")
            guard rep.count == 1 else { throw bad("\(source): decoder Metaspace replacement must be one character, got \(rep.count)") }
            var scheme = PrependScheme.always
            if let s = raw["prepend_scheme"] as? String, let p = PrependScheme(rawValue: s) {
                scheme = p
            } else if let add = raw["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never
            }
            self = .metaspace(replacement: rep[0], scheme: scheme)
        default:
            throw bad("\(source): decoder type '\(shown(type))' is not supported; expected \(Decoder.supported)")
        }
    }

    func apply(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let list):
            var t = tokens
            for d in list { t = d.apply(t) }
            return t
        case .byteLevel:
            // A token whose characters are all byte stand-ins gives those bytes, any other its own UTF-8.
            var bytes: [UInt8] = []
            for token in tokens {
                var mapped: [UInt8] = []
                var all = true
                for u in token.unicodeScalars {
                    guard let b = ByteLevelMap.scalarToByte[u.value] else { all = false; break }
                    mapped.append(b)
                }
                bytes.append(contentsOf: all ? mapped : Array(token.utf8))
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { string(pattern.replacingMatches(in: scalarValues($0), with: content)) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                if pending.isEmpty { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                let u = Array(token.utf8)
                if u.count == 6, token.hasPrefix("<0x"), u[5] == 0x3E, let b = UInt8(String(token.dropFirst(3).prefix(2)), radix: 16) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let chars = scalarValues(token)
                var lo = 0, hi = chars.count
                while lo < min(start, chars.count) && chars[lo] == content { lo += 1 }
                var cut = 0
                while cut < stop && hi > lo && chars[hi - 1] == content { hi -= 1; cut += 1 }
                return string(chars[lo..<hi])
            }
        case .metaspace(let replacement, let scheme):
            // As `tokenizers`: in the first token every "▁" is dropped (unless the scheme is never), elsewhere it
            // becomes a space.
            return tokens.enumerated().map { i, token in
                var out: [UInt32] = []
                for c in scalarValues(token) {
                    if c == replacement {
                        if i == 0 && scheme != .never { continue }
                        out.append(32)
                    } else {
                        out.append(c)
                    }
                }
                return string(out)
            }
        }
    }
}
