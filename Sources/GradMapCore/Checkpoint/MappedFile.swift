// A read-only memory mapping of a whole file: tensors are read from the page cache on demand, so a rank
// touches only the bytes of the tensors it asks for.
import Foundation
import GradMapSupport

public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    public let bytes: UnsafeRawPointer

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            if errno == ENOENT { throw bad("\(path): file not found") }
            throw bad("\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw bad("\(path): cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw bad("\(path): not a regular file") }
        size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8))
            isMapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw GradMapError.runtime("\(path): mmap failed (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawPointer(p)
        isMapped = true
    }

    private let isMapped: Bool

    deinit {
        if isMapped { munmap(UnsafeMutableRawPointer(mutating: bytes), size) }
        else { UnsafeMutableRawPointer(mutating: bytes).deallocate() }
    }
}
