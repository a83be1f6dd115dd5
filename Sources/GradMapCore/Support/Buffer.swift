// One owned, zero-initialised allocation of scalars. Engine state lives in a few of these, sized from the
// config once; kernels take raw pointers into them so hot loops never allocate or retain.

public final class Buffer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public let count: Int

    public init(count: Int, zero: T) {
        precondition(count >= 0)
        self.count = count
        pointer = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        pointer.initialize(repeating: zero, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    public subscript(i: Int) -> T {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

extension Buffer where T: BinaryFloatingPoint {
    public convenience init(count: Int) { self.init(count: count, zero: 0) }
    public func zero() { pointer.update(repeating: 0, count: count) }
    public var array: [T] { Array(buffer) }
}

/// A grow-only area of BF16 bits (64-byte aligned) for the products' rounded or packed inputs: fresh pages per
/// product cost more than the product. Not thread-safe: its owner serialises the products that use it.
package final class BF16Scratch: @unchecked Sendable {
    private var base: UnsafeMutablePointer<UInt16>? = nil
    private var capacity = 0

    package init() {}

    /// At least `count` elements; earlier contents are not kept when it grows.
    package func reserve(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if count > capacity {
            base?.deallocate()
            capacity = max(count, capacity * 5 / 4)
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
                .bindMemory(to: UInt16.self, capacity: capacity)
        }
        return base!
    }
}
