import Glibc

/// A failed system call, as a value: which call, which errno, on what, and
/// anything else worth knowing.
///
/// Every error from the OS layer names its call, so that a log line alone
/// tells an operator what the kernel refused:
/// `accept(/run/x.sock): Too many open files (errno 24)`. Layers above keep
/// this value inside their own errors (VFIOError adds a hint) rather than
/// flattening it into text.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call that failed, as an operator would search for it:
    /// "open", "accept", "VFIO_IOMMU_MAP_DMA".
    public var call: String
    /// The errno the kernel returned; 0 when the failure is ours rather than
    /// the kernel's (e.g. the peer closed in the middle of a message).
    public var errno: Int32
    /// What the call was made on: a path, a socket, "group 12".
    public var subject: String?
    /// Anything else: a range, a size, why our own check failed.
    public var detail: String?

    public init(call: String, errno: Int32, subject: String? = nil, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
        self.detail = detail
    }

    /// `call(subject: detail): strerror (errno N)`, leaving out what is absent.
    public var description: String {
        var text = call
        let context = [subject, detail].compactMap { $0 }
        if !context.isEmpty { text += "(" + context.joined(separator: ": ") + ")" }
        if errno != 0 {
            text += ": \(String(cString: strerror(errno))) (errno \(errno))"
        }
        return text
    }

    /// Turns a result-or--errno into the value, or an error naming `call`.
    /// For results already retried with `retryingEINTR` and checked for the
    /// errnos the caller handles itself.
    @inlinable
    @discardableResult
    public static func check<T: FixedWidthInteger & SignedInteger>(
        _ result: T, _ call: String,
        subject: @autoclosure () -> String? = nil, detail: @autoclosure () -> String? = nil
    ) throws(SystemError) -> T {
        if result >= 0 { return result }
        throw SystemError(call: call, errno: Int32(truncatingIfNeeded: -result), subject: subject(), detail: detail())
    }
}

/// An error type that can carry a `SystemError`: lets scoped access to a
/// descriptor (`FileDescriptor.withRawValue`) report "already closed" in the
/// caller's own error type.
public protocol SystemErrorWrapping: Error {
    init(wrapping error: SystemError)
}

extension SystemError: SystemErrorWrapping {
    public init(wrapping error: SystemError) {
        self = error
    }
}
