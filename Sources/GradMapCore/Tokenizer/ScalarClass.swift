// Sets of Unicode scalars as the pre-tokenizer regexes use them (\p{L}, \p{N}, \s, [^\r\n...]), and the GPT-2
// byte ↔ printable-character map of byte-level BPE. Text is handled as [UInt32] scalar values throughout.

/// Unicode general categories as bits, so that \p{L} or \p{N} is one mask test.
enum Category {
    static func bit(_ c: UInt32) -> UInt64 {
        guard let s = Unicode.Scalar(c) else { return 1 << 33 }  // surrogates cannot occur in a String: Cs
        return 1 << index(s.properties.generalCategory)
    }

    static func index(_ g: Unicode.GeneralCategory) -> UInt64 {
        switch g {
        case .uppercaseLetter: return 0
        case .lowercaseLetter: return 1
        case .titlecaseLetter: return 2
        case .modifierLetter: return 3
        case .otherLetter: return 4
        case .nonspacingMark: return 5
        case .spacingMark: return 6
        case .enclosingMark: return 7
        case .decimalNumber: return 8
        case .letterNumber: return 9
        case .otherNumber: return 10
        case .connectorPunctuation: return 11
        case .dashPunctuation: return 12
        case .openPunctuation: return 13
        case .closePunctuation: return 14
        case .initialPunctuation: return 15
        case .finalPunctuation: return 16
        case .otherPunctuation: return 17
        case .mathSymbol: return 18
        case .currencySymbol: return 19
        case .modifierSymbol: return 20
        case .otherSymbol: return 21
        case .spaceSeparator: return 22
        case .lineSeparator: return 23
        case .paragraphSeparator: return 24
        case .control: return 25
        case .format: return 26
        case .surrogate: return 33
        case .privateUse: return 27
        case .unassigned: return 28
        @unknown default: return 28
        }
    }

    static let letter: UInt64 = 0b11111
    static let mark: UInt64 = 0b111 << 5
    static let number: UInt64 = 0b111 << 8
    static let punctuation: UInt64 = 0b1111111 << 11
    static let symbol: UInt64 = 0b1111 << 18
    static let separator: UInt64 = 0b111 << 22
    static let other: UInt64 = (0b1111 << 25) | (1 << 33)

    /// \p{...} names: one- and two-letter general categories and the long names of the seven groups.
    static func named(_ name: String) -> UInt64? {
        let groups: [String: UInt64] = [
            "L": letter, "Letter": letter, "M": mark, "Mark": mark, "N": number, "Number": number,
            "P": punctuation, "Punctuation": punctuation, "S": symbol, "Symbol": symbol,
            "Z": separator, "Separator": separator, "C": other, "Other": other,
            "L&": 0b111, "LC": 0b111,
        ]
        if let g = groups[name] { return g }
        let two = [
            "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
            "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cn",
        ]
        if let i = two.firstIndex(of: name) { return 1 << UInt64(i) }
        if name == "Cs" { return 1 << 33 }
        return nil
    }
}

@inline(__always)
func isWhiteSpace(_ c: UInt32) -> Bool {
    if c < 128 { return c == 32 || (c >= 9 && c <= 13) }
    return Unicode.Scalar(c)?.properties.isWhitespace ?? false
}

/// Rust regex's Unicode \w (what `tokenizers` uses for single_word): alphabetic, marks, decimal digits,
/// connector punctuation, join controls.
func isWordChar(_ c: UInt32) -> Bool {
    if c < 128 {
        return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
    }
    guard let s = Unicode.Scalar(c) else { return false }
    let p = s.properties
    return p.isAlphabetic || p.isJoinControl || Category.bit(c) & (Category.mark | 1 << 8 | 1 << 11) != 0
}

@inline(__always)
func isNumeric(_ c: UInt32) -> Bool {
    if c < 128 { return c >= 48 && c <= 57 }
    return Category.bit(c) & Category.number != 0
}

/// A set of scalars: a union of items, maybe negated. ASCII membership is precomputed as a bitmap.
struct ScalarClass: Sendable {
    indirect enum Item: Sendable {
        case range(UInt32, UInt32)
        case categories(UInt64)
        case whitespace
        case word
        case not(Item)
    }

    var items: [Item] = []
    var negated = false
    private var low: UInt64 = 0, high: UInt64 = 0

    init(items: [Item], negated: Bool = false) {
        self.items = items
        self.negated = negated
        for c in UInt32(0)..<128 where slowContains(c) {
            if c < 64 { low |= 1 << UInt64(c) } else { high |= 1 << UInt64(c - 64) }
        }
    }

    static func scalars(_ list: [UInt32]) -> ScalarClass { ScalarClass(items: list.map { .range($0, $0) }) }

    @inline(__always)
    func contains(_ c: UInt32) -> Bool {
        if c < 64 { return (low >> UInt64(c)) & 1 == 1 }
        if c < 128 { return (high >> UInt64(c - 64)) & 1 == 1 }
        return slowContains(c)
    }

    private func slowContains(_ c: UInt32) -> Bool {
        var hit = false
        for item in items where ScalarClass.matches(item, c) {
            hit = true
            break
        }
        return hit != negated
    }

    private static func matches(_ item: Item, _ c: UInt32) -> Bool {
        switch item {
        case .range(let a, let b): return c >= a && c <= b
        case .categories(let mask): return Category.bit(c) & mask != 0
        case .whitespace: return isWhiteSpace(c)
        case .word: return isWordChar(c)
        case .not(let inner): return !matches(inner, c)
        }
    }
}

/// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 take U+0100 onwards.
enum ByteLevelMap {
    static let byteToScalar: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                map[b] = UInt32(b)
            } else {
                map[b] = 256 + n
                n += 1
            }
        }
        return map
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var inverse = [UInt32: UInt8]()
        for (b, s) in byteToScalar.enumerated() { inverse[s] = UInt8(b) }
        return inverse
    }()
}

/// UTF-8 bytes of one scalar value.
@inline(__always)
func utf8Bytes(_ c: UInt32, into out: inout [UInt8]) {
    if c < 0x80 {
        out.append(UInt8(c))
    } else if c < 0x800 {
        out.append(UInt8(0xC0 | (c >> 6)))
        out.append(UInt8(0x80 | (c & 0x3F)))
    } else if c < 0x10000 {
        out.append(UInt8(0xE0 | (c >> 12)))
        out.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (c & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (c >> 18)))
        out.append(UInt8(0x80 | ((c >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (c & 0x3F)))
    }
}

func scalarValues(_ s: String) -> [UInt32] { s.unicodeScalars.map { $0.value } }

func string(_ scalars: some Sequence<UInt32>) -> String {
    var s = String.UnicodeScalarView()
    for c in scalars { if let u = Unicode.Scalar(c) { s.append(u) } }
    return String(s)
}
