import Glibc
import Synchronization

/// Sole owner of one open file descriptor: closed exactly once, either by an
/// explicit `close()` (which reports the error) or, failing that, when the
/// owner is deallocated.
///
/// The raw number is only handed out inside `withDescriptor`, under a lock
/// that `close()` also takes, so no call can run on a number that has been
/// closed and possibly reused by another open(2) in the meantime. The price
/// is that calls on one descriptor are serialized, which VFIO does anyway
/// (type1 holds its iommu lock across MAP_DMA and UNMAP_DMA).
public final class OwnedFD: Sendable {
    /// What was opened, for error messages ("/dev/vfio/12").
    public let path: String
    private let kernel: any VFIOKernel
    /// The descriptor, or -1 once closed.
    private let state: Mutex<Int32>

    /// Takes ownership of `fd`, which must be open and owned by no one else.
    public init(adopting fd: Int32, path: String, kernel: any VFIOKernel) {
        precondition(fd >= 0, "OwnedFD needs an open descriptor")
        self.path = path
        self.kernel = kernel
        self.state = Mutex(fd)
    }

    /// Opens `path` (O_CLOEXEC is always added: a VFIO descriptor leaked into a
    /// child would keep the group or container busy after we exit).
    ///
    /// - Parameter hint: explains the errno of a failed open for this kind of file.
    public static func open(
        _ path: String,
        flags: Int32 = O_RDWR,
        kernel: any VFIOKernel,
        hint: (Int32) -> String? = { _ in nil }
    ) throws(VFIOError) -> OwnedFD {
        let fd = try syscallRetrying("open", on: path, hint: hint) {
            kernel.open(path, flags: flags | O_CLOEXEC)
        }
        return OwnedFD(adopting: fd, path: path, kernel: kernel)
    }

    /// True until `close()` has been called.
    public var isOpen: Bool {
        state.withLock { $0 >= 0 }
    }

    /// Runs `body` with the raw descriptor, which stays open for its duration.
    /// Throws EBADF, naming `operation`, if the descriptor was already closed.
    @discardableResult
    public func withDescriptor<R: Sendable>(
        _ operation: String,
        _ body: (Int32) throws(VFIOError) -> R
    ) throws(VFIOError) -> R {
        try state.withLock { (fd: inout Int32) throws(VFIOError) -> R in
            guard fd >= 0 else {
                throw VFIOError(operation: operation, subject: path, errno: EBADF,
                                detail: "descriptor already closed")
            }
            return try body(fd)
        }
    }

    /// Closes the descriptor. A second call throws EBADF without touching the
    /// kernel: the number may already belong to someone else.
    public func close() throws(VFIOError) {
        let fd = state.withLock { fd in
            let old = fd
            fd = -1
            return old
        }
        guard fd >= 0 else {
            throw VFIOError(operation: "close", subject: path, errno: EBADF,
                            detail: "descriptor already closed")
        }
        try syscallRetrying("close", on: path, retryOnInterrupt: false) {
            kernel.close(fd)
        }
    }

    deinit {
        // Nothing can be reported from deinit; an explicit close() is the way
        // to see close errors. Not retried, as in close().
        let fd = state.withLock { $0 }
        if fd >= 0 { _ = kernel.close(fd) }
    }
}
