// Token files: raw little-endian uint32 ids, cut into consecutive non-overlapping windows of T tokens (the tail
// dropped). Validated on load: size a multiple of 4, at least one window, every id below the vocabulary.
import Foundation
import GradMapFormats
import GradMapSupport

public struct TokenWindows: Sendable {
    public let path: String
    public let tokens: [UInt32]
    public let seqLen: Int
    public var windowCount: Int { tokens.count / seqLen }

    public init(path: String, seqLen: Int, vocabSize: Int) throws {
        guard seqLen >= 2 else { throw bad(.seqLen, seqLen, "must be at least 2") }
        let file = try MappedFile(path: path)
        guard file.size % 4 == 0 else {
            throw bad("\(path): size \(file.size) bytes is not a multiple of 4 (expected little-endian uint32 token ids)")
        }
        let count = file.size / 4
        guard count >= seqLen else {
            throw bad(.seqLen, seqLen, "\(path): \(count) tokens is shorter than one window")
        }
        var ids = [UInt32](repeating: 0, count: count)
        ids.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: file.bytes, count: file.size)) }
        for i in 0..<count {
            ids[i] = UInt32(littleEndian: ids[i])
            if ids[i] >= UInt32(vocabSize) {
                throw bad("\(path): token id \(ids[i]) at position \(i) is out of range; expected < vocab_size \(vocabSize)")
            }
        }
        self.init(path: path, tokens: ids, seqLen: seqLen)
    }

    /// Ids made in memory (tokenised text), validated like a token file.
    public init(path: String, tokens: [UInt32], seqLen: Int, vocabSize: Int) throws {
        guard tokens.count >= seqLen else {
            throw bad(.seqLen, seqLen, "\(path): \(tokens.count) tokens is shorter than one window")
        }
        if let i = tokens.firstIndex(where: { $0 >= UInt32(vocabSize) }) {
            throw bad("\(path): token id \(tokens[i]) at position \(i) is out of range; expected < vocab_size \(vocabSize)")
        }
        self.init(path: path, tokens: tokens, seqLen: seqLen)
    }

    public init(path: String, tokens: [UInt32], seqLen: Int) {
        self.path = path
        self.tokens = tokens
        self.seqLen = seqLen
    }

    /// The first `max` windows (all when nil), as window indices; `field` is the setting `max` came from.
    public func firstWindows(_ max: Int?, field: ConfigField) throws -> [Int] {
        if let max, max < 1 { throw bad(field, max, "must be at least 1") }
        return Array(0..<Swift.min(windowCount, max ?? windowCount))
    }

    /// `count` windows spread evenly over the stream: window ⌊i·W/count⌋ for i = 0..count-1.
    /// `field` is the setting `count` came from (calibration or held-out windows).
    public func spreadWindows(_ count: Int, field: ConfigField) throws -> [Int] {
        guard count >= 1 else { throw bad(field, count, "must be at least 1") }
        guard count <= windowCount else {
            throw bad(field, count, "\(path): \(windowCount) windows of \(seqLen) tokens, fewer than the \(count) asked for")
        }
        return (0..<count).map { $0 * windowCount / count }
    }

    /// Copies the listed windows' ids, consecutive, into dst ([count·T]).
    public func gather(_ windows: ArraySlice<Int>, into dst: UnsafeMutablePointer<UInt32>) {
        tokens.withUnsafeBufferPointer { src in
            for (j, w) in windows.enumerated() {
                (dst + j * seqLen).update(from: src.baseAddress! + w * seqLen, count: seqLen)
            }
        }
    }
}
