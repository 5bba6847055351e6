/// Why the vfio-user codec refused a message: a reason a test or the server
/// can match on, the errno the error reply carries (vfio-user.rst, "Header":
/// a reply with the error flag carries a UNIX errno), and a message saying
/// what was wrong, where, and what the spec expects.
public struct VFIOUserWireError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        /// Fewer bytes than the header's message size, or a size below 16.
        case truncated
        /// More bytes than the header's message size.
        case trailingBytes
        /// A message shorter (or, for fixed layouts, longer) than its command's layout.
        case badLength
        /// An `argsz` that disagrees with the layout.
        case badArgsz
        /// A command number the spec does not assign.
        case unknownCommand
        /// A command the spec assigns but this codec does not decode.
        case unsupportedCommand
        /// A transfer above the limit (`VFIOUserLimits`).
        case tooLarge
        /// A reply where a command was expected, or the other way round.
        case wrongType
        /// Anything else: undefined flag bits, bad capabilities JSON, ...
        case malformed
    }

    public var reason: Reason
    public var message: String
    /// The header, when one was read: the server echoes its message ID and
    /// command in the error reply.
    public var header: VFIOUserHeader?

    public init(_ reason: Reason, _ message: String, header: VFIOUserHeader? = nil) {
        self.reason = reason
        self.message = message
        self.header = header
    }

    /// The errno for the error reply. Linux values (asm-generic/errno-base.h,
    /// errno.h): what the kernel's VFIO ioctls return for the same faults.
    public var errno: UInt32 {
        switch reason {
        case .unknownCommand, .unsupportedCommand: 95 // EOPNOTSUPP
        case .tooLarge: 7 // E2BIG
        default: 22 // EINVAL
        }
    }

    public var description: String { "vfio-user \(reason.rawValue): \(message)" }
}
