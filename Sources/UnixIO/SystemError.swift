import Glibc

/// A failed system call, as a value: which call, which errno, and on what.
///
/// Every error from UnixIO names its call (NIOPosix style), so a log line
/// alone says what the kernel refused: `accept(/run/x.sock): Too many open
/// files (errno 24)`.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call that failed, as an operator would search for it:
    /// "accept", "bind", "recvmsg".
    public var call: String
    /// The errno the kernel returned; 0 when the failure is ours rather than
    /// the kernel's (e.g. the peer closed in the middle of a message).
    public var errno: Int32
    /// What the call was made on, and anything else worth knowing:
    /// "/run/x.sock", "another daemon is listening on /run/x.sock".
    public var detail: String?

    public init(call: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        var text = call
        if let detail { text += "(\(detail))" }
        if errno != 0 {
            text += ": \(String(cString: strerror(errno))) (errno \(errno))"
        }
        return text
    }
}
