import Glibc
import Posix

/// An error from the VFIO layer, as a value: the failed call as the OS layer
/// reports it (`SystemError`: which call, on what, which errno), and what
/// usually causes it.
///
/// Every system-call error carries the name of the call (NIOPosix style), so a
/// log line alone tells an operator what the kernel refused.
public struct VFIOError: Error, Sendable, Equatable, CustomStringConvertible, SystemErrorWrapping {
    /// The failed call. Its errno is 0 when the failure is ours (a short
    /// unmap, a malformed reply), not the kernel's.
    public var system: SystemError
    /// What usually causes this and what to do about it, when we know.
    public var hint: String?

    public init(_ system: SystemError, hint: String? = nil) {
        self.system = system
        self.hint = hint
    }

    public init(wrapping error: SystemError) {
        self.init(error)
    }

    public init(operation: String, subject: String, errno: Int32, detail: String? = nil, hint: String? = nil) {
        self.init(SystemError(call: operation, errno: errno, subject: subject, detail: detail), hint: hint)
    }

    /// The system call or ioctl that failed, e.g. "VFIO_IOMMU_MAP_DMA" or "open".
    public var operation: String {
        get { system.call }
        set { system.call = newValue }
    }

    /// What it was done to: "/dev/vfio/vfio", "group 12", "device 0000:00:03.0".
    public var subject: String {
        get { system.subject ?? "" }
        set { system.subject = newValue }
    }

    /// The errno the kernel returned; 0 when the failure is ours.
    public var errno: Int32 {
        get { system.errno }
        set { system.errno = newValue }
    }

    /// Extra detail that is not a hint, e.g. the range of a failed map.
    public var detail: String? {
        get { system.detail }
        set { system.detail = newValue }
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
