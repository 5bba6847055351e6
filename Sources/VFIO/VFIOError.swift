import Glibc

/// An error from the VFIO layer, as a value: which call failed, on what, with
/// which errno, and what usually causes it.
///
/// Every system-call error carries the name of the call (NIOPosix style), so a
/// log line alone tells an operator what the kernel refused.
public struct VFIOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call or ioctl that failed, e.g. "VFIO_IOMMU_MAP_DMA" or "open".
    public var operation: String
    /// What it was done to: "/dev/vfio/vfio", "group 12", "device 0000:00:03.0", "container".
    public var subject: String
    /// The errno the kernel returned; 0 when the failure is ours (e.g. a short unmap).
    public var errno: Int32
    /// What usually causes this and what to do about it, when we know.
    public var hint: String?
    /// Extra detail that is not a hint, e.g. the range of a failed map.
    public var detail: String?

    public init(operation: String, subject: String, errno: Int32, detail: String? = nil, hint: String? = nil) {
        self.operation = operation
        self.subject = subject
        self.errno = errno
        self.detail = detail
        self.hint = hint
    }

    public var description: String {
        var text = "\(operation) on \(subject) failed"
        if errno != 0 {
            text += ": \(String(cString: strerror(errno))) (errno \(errno))"
        }
        if let detail { text += " [\(detail)]" }
        if let hint { text += "; \(hint)" }
        return text
    }
}
