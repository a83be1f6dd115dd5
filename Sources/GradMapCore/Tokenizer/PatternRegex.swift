// A small backtracking regex engine for pre-tokenizer patterns (GPT-2's, LLaMA-3's, Qwen2's and the like).
// `tokenizers` runs these through Oniguruma: leftmost-first alternation, greedy quantifiers, Unicode classes.
// This covers the syntax such patterns use — alternation, (?:) (?i:) (?=) (?!) groups, classes with \p{..},
// \s \d \w and their negations, ? * + {m,n} (greedy or lazy), . ^ $ — and rejects the rest with a clear error.
// It matches on [UInt32] scalar values, which keeps the pre-tokenizer free of String and NSString work.
import GradMapSupport

struct PatternRegex: Sendable {
    /// One instruction; plain data so that the matching loop does no reference counting. A scalar test
    /// carries its class's ASCII bitmap and consults `classes[a]` only for non-ASCII input.
    private struct Op: Sendable {
        enum Kind: UInt8, Sendable { case scalar, split, jump, look, lookNot, lineStart, lineEnd, textStart, textEnd, match }
        var kind: Kind
        var a = 0, b = 0  // scalar: class index; split: first, second target; jump: target; look: sub-program
        var low: UInt64 = 0, high: UInt64 = 0
    }

    private var program: [Op] = []
    private var classes: [ScalarClass] = []
    let source: String

    init(_ pattern: String) throws {
        source = pattern
        var parser = Parser(pattern: scalarValues(pattern), source: pattern)
        let node = try parser.parseAll()
        var compiler = Compiler()
        try compiler.emitMain(node)
        program = compiler.program
        classes = compiler.classes
    }

    /// Non-overlapping matches, left to right, as (start, end) scalar offsets; an empty match moves on by one.
    func matches(in text: [UInt32]) -> [(Int, Int)] {
        var out: [(Int, Int)] = []
        var stack: [Int] = []
        stack.reserveCapacity(64)
        text.withUnsafeBufferPointer { t in
            program.withUnsafeBufferPointer { prog in
                var start = 0
                while start <= t.count {
                    if let end = run(prog, 0, start, t, &stack) {
                        out.append((start, end))
                        start = end > start ? end : start + 1
                    } else {
                        start += 1
                    }
                }
            }
        }
        return out
    }

    /// Backtracking from program counter `pc0` at `pos0`; the end of the first match found, or nil.
    private func run(
        _ prog: UnsafeBufferPointer<Op>, _ pc0: Int, _ pos0: Int, _ t: UnsafeBufferPointer<UInt32>, _ stack: inout [Int]
    ) -> Int? {
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        var pc = pc0, pos = pos0
        let n = t.count
        while true {
            var ok = true
            let op = prog[pc]
            switch op.kind {
            case .scalar:
                if pos < n {
                    let c = t[pos]
                    let hit = c < 64 ? (op.low >> UInt64(c)) & 1 == 1
                        : c < 128 ? (op.high >> UInt64(c - 64)) & 1 == 1 : classes[op.a].contains(c)
                    if hit {
                        pos += 1
                        pc += 1
                    } else {
                        ok = false
                    }
                } else {
                    ok = false
                }
            case .split:
                stack.append(op.b)
                stack.append(pos)
                pc = op.a
            case .jump:
                pc = op.a
            case .look, .lookNot:
                let found = run(prog, op.a, pos, t, &stack) != nil
                if found == (op.kind == .look) { pc += 1 } else { ok = false }
            case .lineStart:
                if pos == 0 || t[pos - 1] == 10 { pc += 1 } else { ok = false }
            case .lineEnd:
                if pos == n || t[pos] == 10 { pc += 1 } else { ok = false }
            case .textStart:
                if pos == 0 { pc += 1 } else { ok = false }
            case .textEnd:
                if pos == n { pc += 1 } else { ok = false }
            case .match:
                return pos
            }
            if !ok {
                if stack.count == base { return nil }
                pos = stack.removeLast()
                pc = stack.removeLast()
            }
        }
    }

    // MARK: - Syntax tree

    fileprivate indirect enum Node {
        case scalar(ScalarClass)
        case sequence([Node])
        case alternation([Node])
        case repeated(Node, min: Int, max: Int?, greedy: Bool)
        case look(Node, negative: Bool)
        case lineStart, lineEnd, textStart, textEnd

        /// Whether the node can match the empty string (a loop over such a node could spin forever).
        var nullable: Bool {
            switch self {
            case .scalar: return false
            case .sequence(let items): return items.allSatisfy { $0.nullable }
            case .alternation(let items): return items.contains { $0.nullable }
            case .repeated(let node, let min, _, _): return min == 0 || node.nullable
            case .look, .lineStart, .lineEnd, .textStart, .textEnd: return true
            }
        }
    }

    private struct Compiler {
        var program: [Op] = []
        var classes: [ScalarClass] = []
        var pending: [(Int, Node)] = []  // look-ahead bodies, compiled after the main program

        mutating func emitMain(_ node: Node) throws {
            try emit(node)
            program.append(Op(kind: .match))
            while !pending.isEmpty {
                let (at, body) = pending.removeFirst()
                program[at].a = program.count
                try emit(body)
                program.append(Op(kind: .match))
            }
        }

        mutating func split(_ at: Int, _ first: Int, _ second: Int) {
            program[at] = Op(kind: .split, a: first, b: second)
        }

        mutating func emit(_ node: Node) throws {
            switch node {
            case .scalar(let c):
                var op = Op(kind: .scalar, a: classes.count)
                for v in UInt32(0)..<128 where c.contains(v) {
                    if v < 64 { op.low |= 1 << UInt64(v) } else { op.high |= 1 << UInt64(v - 64) }
                }
                classes.append(c)
                program.append(op)
            case .sequence(let items): for item in items { try emit(item) }
            case .alternation(let items):
                var jumps: [Int] = []
                for (i, item) in items.enumerated() {
                    if i < items.count - 1 {
                        let at = program.count
                        program.append(Op(kind: .split))
                        try emit(item)
                        jumps.append(program.count)
                        program.append(Op(kind: .jump))
                        split(at, at + 1, program.count)
                    } else {
                        try emit(item)
                    }
                }
                for j in jumps { program[j].a = program.count }
            case .repeated(let body, let min, let max, let greedy):
                if max == nil || max! > min, body.nullable {
                    throw bad("pattern: a repeated group that can match nothing is not supported")
                }
                for _ in 0..<min { try emit(body) }
                if let max {
                    var exits: [Int] = []
                    for _ in min..<max {
                        exits.append(program.count)
                        program.append(Op(kind: .split))
                        try emit(body)
                    }
                    for e in exits { greedy ? split(e, e + 1, program.count) : split(e, program.count, e + 1) }
                } else {
                    let loop = program.count
                    program.append(Op(kind: .split))
                    try emit(body)
                    program.append(Op(kind: .jump, a: loop))
                    greedy ? split(loop, loop + 1, program.count) : split(loop, program.count, loop + 1)
                }
            case .look(let body, let negative):
                pending.append((program.count, body))
                program.append(Op(kind: negative ? .lookNot : .look))
            case .lineStart: program.append(Op(kind: .lineStart))
            case .lineEnd: program.append(Op(kind: .lineEnd))
            case .textStart: program.append(Op(kind: .textStart))
            case .textEnd: program.append(Op(kind: .textEnd))
            }
        }
    }

    // MARK: - Parser

    private struct Parser {
        let pattern: [UInt32]
        let source: String
        var i = 0

        init(pattern: [UInt32], source: String) {
            self.pattern = pattern
            self.source = source
        }

        func fail(_ what: String) -> GradMapError {
            bad("pattern \(source.debugDescription): \(what) at offset \(i)")
        }

        var atEnd: Bool { i >= pattern.count }
        func peek(_ k: Int = 0) -> UInt32? { i + k < pattern.count ? pattern[i + k] : nil }

        mutating func parseAll() throws -> Node {
            let node = try parseAlternation(caseInsensitive: false)
            if !atEnd { throw fail("unbalanced ')'") }
            return node
        }

        mutating func parseAlternation(caseInsensitive: Bool) throws -> Node {
            var ci = caseInsensitive
            var branches: [Node] = [try parseSequence(&ci)]
            while peek() == 0x7C {  // |
                i += 1
                branches.append(try parseSequence(&ci))
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func parseSequence(_ ci: inout Bool) throws -> Node {
            var items: [Node] = []
            while let c = peek(), c != 0x7C, c != 0x29 {  // | )
                if c == 0x28, peek(1) == 0x3F, peek(2) == 0x69, peek(3) == 0x29 {  // (?i) for the rest
                    i += 4
                    ci = true
                    continue
                }
                var atom = try parseAtom(ci)
                atom = try parseQuantifier(atom)
                items.append(atom)
            }
            return items.count == 1 ? items[0] : .sequence(items)
        }

        mutating func parseQuantifier(_ atom: Node) throws -> Node {
            var min = 0, max: Int? = nil
            guard let c = peek() else { return atom }
            switch c {
            case 0x2A: min = 0; max = nil; i += 1  // *
            case 0x2B: min = 1; max = nil; i += 1  // +
            case 0x3F: min = 0; max = 1; i += 1  // ?
            case 0x7B:  // {m}, {m,}, {m,n}; anything else is a literal '{'
                guard let (lo, hi, length) = braces() else { return atom }
                min = lo; max = hi; i += length
            default: return atom
            }
            var greedy = true
            if peek() == 0x3F { greedy = false; i += 1 }
            else if peek() == 0x2B { throw fail("possessive quantifiers are not supported") }
            if let max, max < min { throw fail("quantifier {\(min),\(max)} has max < min") }
            if min > 1000 || (max ?? 0) > 1000 { throw fail("counted repetition above 1000 is not supported") }
            return .repeated(atom, min: min, max: max, greedy: greedy)
        }

        func braces() -> (Int, Int?, Int)? {
            var k = i + 1
            func number() -> Int? {
                var v: Int? = nil
                while k < pattern.count, pattern[k] >= 0x30, pattern[k] <= 0x39 {
                    v = (v ?? 0) * 10 + Int(pattern[k] - 0x30)
                    k += 1
                }
                return v
            }
            guard let lo = number() else { return nil }
            var hi: Int? = lo
            if k < pattern.count, pattern[k] == 0x2C {
                k += 1
                hi = number()
            }
            guard k < pattern.count, pattern[k] == 0x7D else { return nil }
            return (lo, hi, k + 1 - i)
        }

        mutating func parseAtom(_ ci: Bool) throws -> Node {
            let c = pattern[i]
            switch c {
            case 0x28:  // (
                i += 1
                var caseInsensitive = ci
                var lookNegative: Bool? = nil
                if peek() == 0x3F {  // (?
                    i += 1
                    guard let k = peek() else { throw fail("unterminated group") }
                    switch k {
                    case 0x3A: i += 1  // (?:
                    case 0x3D: i += 1; lookNegative = false  // (?=
                    case 0x21: i += 1; lookNegative = true  // (?!
                    case 0x3C:  // (?<name> ; look-behind is not supported
                        if peek(1) == 0x3D || peek(1) == 0x21 { throw fail("look-behind is not supported") }
                        while let e = peek(), e != 0x3E { i += 1 }
                        i += 1
                    case 0x69, 0x2D:  // (?i: (?-i:
                        let on = k == 0x69
                        i += on ? 1 : 2
                        if !on && pattern[i - 1] != 0x69 { throw fail("unsupported group flags") }
                        guard peek() == 0x3A else { throw fail("unsupported group flags") }
                        i += 1
                        caseInsensitive = on
                    default: throw fail("unsupported group syntax")
                    }
                }
                let inner = try parseAlternation(caseInsensitive: caseInsensitive)
                guard peek() == 0x29 else { throw fail("missing ')'") }
                i += 1
                if let negative = lookNegative { return .look(inner, negative: negative) }
                return inner
            case 0x5B:  // [
                i += 1
                return .scalar(try parseClass(ci))
            case 0x2E:  // . : anything but a newline
                i += 1
                return .scalar(ScalarClass(items: [.range(10, 10)], negated: true))
            case 0x5E: i += 1; return .lineStart
            case 0x24: i += 1; return .lineEnd
            case 0x5C:  // backslash
                i += 1
                guard let e = peek() else { throw fail("trailing backslash") }
                if e == 0x41 { i += 1; return .textStart }  // \A
                if e == 0x7A || e == 0x5A { i += 1; return .textEnd }  // \z \Z
                if e == 0x62 || e == 0x42 { throw fail("word boundaries are not supported") }
                let item = try parseEscape()
                if case .range(let a, let b) = item, a == b { return literal(a, ci) }
                return .scalar(ScalarClass(items: [item]))
            case 0x2A, 0x2B, 0x3F: throw fail("quantifier without a target")
            default:
                i += 1
                return literal(c, ci)
            }
        }

        func literal(_ c: UInt32, _ ci: Bool) -> Node {
            .scalar(ScalarClass.scalars(ci ? caseVariants(c) : [c]))
        }

        /// The scalar and its simple case partners (with the two non-ASCII ones that fold to ASCII letters).
        func caseVariants(_ c: UInt32) -> [UInt32] {
            var out: [UInt32] = [c]
            guard let s = Unicode.Scalar(c) else { return out }
            for m in [s.properties.lowercaseMapping, s.properties.uppercaseMapping, s.properties.titlecaseMapping] {
                let v = m.unicodeScalars.map { $0.value }
                if v.count == 1, !out.contains(v[0]) { out.append(v[0]) }
            }
            if c == 0x73 || c == 0x53 { out.append(0x17F) }  // ſ folds to s
            if c == 0x6B || c == 0x4B { out.append(0x212A) }  // Kelvin sign folds to k
            return out
        }

        /// After a backslash: a class item or a single scalar (as a one-scalar range).
        mutating func parseEscape() throws -> ScalarClass.Item {
            let e = pattern[i]
            i += 1
            switch e {
            case 0x73: return .whitespace  // \s
            case 0x53: return .not(.whitespace)
            case 0x64: return .categories(1 << 8)  // \d = \p{Nd}
            case 0x44: return .not(.categories(1 << 8))
            case 0x77: return .word
            case 0x57: return .not(.word)
            case 0x70, 0x50:  // \p{..} \P{..} \pL
                var name = ""
                var negate = e == 0x50
                if peek() == 0x7B {
                    i += 1
                    while let c = peek(), c != 0x7D { name.unicodeScalars.append(Unicode.Scalar(c)!); i += 1 }
                    guard peek() == 0x7D else { throw fail("unterminated \\p{") }
                    i += 1
                } else if let c = peek() {
                    name = String(Unicode.Scalar(c)!)
                    i += 1
                }
                if name.hasPrefix("^") { negate.toggle(); name.removeFirst() }
                guard let mask = Category.named(name) else { throw fail("unsupported property \\p{\(name)}") }
                return negate ? .not(.categories(mask)) : .categories(mask)
            case 0x6E: return .range(10, 10)  // \n
            case 0x72: return .range(13, 13)  // \r
            case 0x74: return .range(9, 9)  // \t
            case 0x66: return .range(12, 12)  // \f
            case 0x76: return .range(11, 11)  // \v
            case 0x61: return .range(7, 7)  // \a
            case 0x65: return .range(27, 27)  // \e
            case 0x78, 0x75:  // \xHH \x{H..} \uHHHH
                var digits = ""
                if e == 0x78, peek() == 0x7B {
                    i += 1
                    while let c = peek(), c != 0x7D { digits.unicodeScalars.append(Unicode.Scalar(c)!); i += 1 }
                    i += 1
                } else {
                    for _ in 0..<(e == 0x78 ? 2 : 4) {
                        guard let c = peek() else { break }
                        digits.unicodeScalars.append(Unicode.Scalar(c)!)
                        i += 1
                    }
                }
                guard let v = UInt32(digits, radix: 16) else { throw fail("bad hex escape") }
                return .range(v, v)
            default:
                let isAlnum = (e >= 0x30 && e <= 0x39) || (e >= 0x41 && e <= 0x5A) || (e >= 0x61 && e <= 0x7A)
                if isAlnum { throw fail("unsupported escape \\\(String(Unicode.Scalar(e)!))") }
                return .range(e, e)  // an escaped punctuation character stands for itself
            }
        }

        /// After '[': items up to the closing ']'.
        mutating func parseClass(_ ci: Bool) throws -> ScalarClass {
            var negated = false
            if peek() == 0x5E { negated = true; i += 1 }
            var items: [ScalarClass.Item] = []
            var first = true
            while true {
                guard let c = peek() else { throw fail("unterminated character class") }
                if c == 0x5D && !first { i += 1; break }  // ]
                first = false
                if c == 0x5B { throw fail("nested character classes are not supported") }
                var lowItem: ScalarClass.Item
                if c == 0x5C {
                    i += 1
                    guard !atEnd else { throw fail("trailing backslash") }
                    lowItem = try parseEscape()
                } else {
                    i += 1
                    lowItem = .range(c, c)
                }
                // A range a-b (a '-' before ']' is literal).
                if case .range(let a, let a2) = lowItem, a == a2, peek() == 0x2D, let next = peek(1), next != 0x5D {
                    i += 1
                    var hiItem: ScalarClass.Item
                    if next == 0x5C {
                        i += 1
                        hiItem = try parseEscape()
                    } else {
                        i += 1
                        hiItem = .range(next, next)
                    }
                    guard case .range(let b, let b2) = hiItem, b == b2, b >= a else { throw fail("bad range in class") }
                    lowItem = .range(a, b)
                }
                if ci, case .range(let a, let b) = lowItem, b - a < 512 {
                    for v in a...b { for w in caseVariants(v) where w < a || w > b { items.append(.range(w, w)) } }
                }
                items.append(lowItem)
            }
            return ScalarClass(items: items, negated: negated)
        }
    }
}
