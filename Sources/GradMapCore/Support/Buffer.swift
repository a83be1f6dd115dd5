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
