// tokenizer.json `added_tokens`: strings (special like <|im_end|> or not) that are cut out of the text whole
// before normalization and BPE, leftmost-longest, as `tokenizers`' AddedVocabulary::find_matches does,
// with its lstrip / rstrip / single_word rules. Tokens with normalized=false are found in the raw text; those
// with normalized=true in the normalized text, as their own content normalized.

struct AddedToken: Sendable {
    var id: UInt32
    var content: String
    var special = false
    var lstrip = false
    var rstrip = false
    var singleWord = false
    var normalized = true
}

/// A trie over the token contents (as scalars) and the matching loop.
struct AddedTokenMatcher: Sendable {
    private var children: [[UInt32: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]  // index into `tokens`, or -1
    private var tokens: [AddedToken] = []
    private var asciiFirst: (UInt64, UInt64) = (0, 0)  // which ASCII scalars start a token
    private var otherFirst: Set<UInt32> = []

    var isEmpty: Bool { tokens.isEmpty }

    /// `patterns[i]` is what `tokens[i]` is matched as (its content, or its content normalized).
    init(_ tokens: [AddedToken], patterns: [[UInt32]]) {
        for (t, p) in zip(tokens, patterns) where !p.isEmpty {
            var node = 0
            for c in p {
                if let n = children[node][c] {
                    node = Int(n)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][c] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] < 0 {
                terminal[node] = Int32(self.tokens.count)
                self.tokens.append(t)
            } else {
                self.tokens[Int(terminal[node])] = t  // the same content twice: the later entry wins
            }
            let f = p[0]
            if f < 64 { asciiFirst.0 |= 1 << UInt64(f) } else if f < 128 { asciiFirst.1 |= 1 << UInt64(f - 64) } else { otherFirst.insert(f) }
        }
    }

    @inline(__always)
    private func mayStart(_ c: UInt32) -> Bool {
        if c < 64 { return (asciiFirst.0 >> UInt64(c)) & 1 == 1 }
        if c < 128 { return (asciiFirst.1 >> UInt64(c - 64)) & 1 == 1 }
        return !otherFirst.isEmpty && otherFirst.contains(c)
    }

    /// The longest token starting at `i`: (token index, end).
    private func longest(_ text: [UInt32], at i: Int) -> (Int, Int)? {
        var node = 0, best: (Int, Int)? = nil
        var k = i
        while k < text.count, let n = children[node][text[k]] {
            node = Int(n)
            k += 1
            if terminal[node] >= 0 { best = (Int(terminal[node]), k) }
        }
        return best
    }

    /// The text cut into stretches: (range, nil) for text, (range, id) for an added token (with the space its
    /// lstrip/rstrip took). Empty stretches are left out.
    func split(_ text: [UInt32]) -> [(Range<Int>, UInt32?)] {
        if tokens.isEmpty { return text.isEmpty ? [] : [(0..<text.count, nil)] }
        var out: [(Range<Int>, UInt32?)] = []
        var startOffset = 0
        var i = 0
        let n = text.count
        while i < n {
            guard mayStart(text[i]), let (index, end) = longest(text, at: i) else {
                i += 1
                continue
            }
            let token = tokens[index]
            var start = i, stop = end
            i = end  // matches never overlap, whether or not this one is kept
            if token.singleWord {
                let startSpace = start == 0 || !isWordChar(text[start - 1])
                let stopSpace = stop == n || !isWordChar(text[stop])
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0 && isWhiteSpace(text[s - 1]) { s -= 1 }
                start = max(s, startOffset)  // spaces an earlier match took stay with it
            }
            if token.rstrip {
                while stop < n && isWhiteSpace(text[stop]) { stop += 1 }
            }
            if startOffset < start { out.append((startOffset..<start, nil)) }
            out.append((start..<max(start, stop), token.id))
            startOffset = stop
        }
        if startOffset < n { out.append((startOffset..<n, nil)) }
        return out
    }
}
