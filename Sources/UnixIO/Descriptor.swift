import CSocket
import Glibc
import Synchronization

/// Sole owner of one open file descriptor: closed exactly once, by an
/// explicit `close()` (which reports the error) or else when the owner is
/// deallocated; or handed away whole with `take()`.
///
/// The number is swapped out atomically, so two racing `close()` calls (or
/// `close()` and `take()`) cannot both act on it. What this does not
/// prevent is a call on `rawValue` racing a `close()` on another thread:
/// the number may then already belong to a new file. The owner of a
/// connection decides when it is closed; no one else closes it.
public final class Descriptor: Sendable, CustomStringConvertible {
    /// The descriptor, or -1 once closed or taken.
    private let number: Atomic<Int32>

    /// Takes ownership of `fd`, which must be open and owned by no one else.
    public init(adopting fd: Int32) {
        precondition(fd >= 0, "Descriptor needs an open descriptor, got \(fd)")
        number = Atomic(fd)
    }

    /// The number, or -1 once closed or taken. A call on -1 fails with EBADF,
    /// which is the error a use after close should get.
    public var rawValue: Int32 {
        number.load(ordering: .acquiring)
    }

    /// True until `close()` or `take()`.
    public var isOpen: Bool {
        rawValue >= 0
    }

    /// Hands ownership away: returns the number, which this object will
    /// never close. For passing a descriptor to code that closes it itself
    /// (another process via SCM_RIGHTS, a mapping that outlives it).
    public func take() -> Int32 {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        precondition(fd >= 0, "take() on a descriptor that was already closed or taken")
        return fd
    }

    /// Closes the descriptor. A second call throws EBADF without touching
    /// the kernel: the number may already belong to someone else.
    public func close() throws(SystemError) {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else {
            throw SystemError(call: "close", errno: EBADF, detail: "descriptor already closed")
        }
        // Not retried on EINTR: see retryingEINTR.
        try check(csocket_close(fd), "close", "fd \(fd)")
    }

    public var description: String {
        let fd = rawValue
        return fd >= 0 ? "fd \(fd)" : "closed descriptor"
    }

    deinit {
        // Nothing can be reported from deinit; close() is the way to see
        // close errors.
        let fd = number.load(ordering: .acquiring)
        if fd >= 0 { _ = csocket_close(fd) }
    }
}
