// A 64-bit FNV-1a digest: enough to tell that a resumed job reads the same model, windows and options as the
// run that journaled its decisions (a check against mistakes, not against tampering).
import Foundation

public struct Fingerprint: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        value = h
    }

    public mutating func add(_ string: String) {
        var s = string + "\u{0}"  // the terminator keeps ("ab", "c") apart from ("a", "bc")
        s.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }

    public mutating func add<T: FixedWidthInteger>(_ x: T) {
        withUnsafeBytes(of: x.littleEndian) { add($0) }
    }

    public var hex: String { String(format: "%016llx", value) }
}
