/// An error reply on the control socket (PROTOCOL.md §2.2):
/// `{"error":{"code":…,"message":…}}`. The code is one of §2.2's list, as a
/// `Code`, so that nothing sends a code the protocol does not name; the
/// message says what was wrong and, where it can, what to do.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error codes of §2.2, by their wire names. A client tells errors
    /// apart by these alone; the message is for people.
    public enum Code: String, Sendable, CaseIterable, CustomStringConvertible {
        /// The line is not JSON, not an object, or not UTF-8.
        case parseError = "parse-error"
        /// The line exceeds the limit; the connection is closed.
        case lineTooLong = "line-too-long"
        case missingArgument = "missing-argument"
        /// Wrong type or value; the message names the argument.
        case invalidArgument = "invalid-argument"
        case unknownCommand = "unknown-command"
        /// The peer's credentials are not allowed; the connection is closed.
        case permissionDenied = "permission-denied"
        case notAttached = "not-attached"
        case alreadyAttached = "already-attached"
        /// The kernel refused; the message carries the call, errno and hint.
        case vfioError = "vfio-error"
        /// The command needs the guest IOMMU state, and no VMM has sent it.
        case noVMM = "no-vmm"
        case shuttingDown = "shutting-down"
        /// The daemon cannot serve the request for a reason of its own.
        case `internal` = "internal"

        /// The wire name, so that messages and logs quote what a client sees.
        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    // MARK: - The errors the daemon and the codec send

    /// The line is not JSON, or not a JSON object; `detail` says where.
    public static func parseError(_ detail: String) -> ControlError {
        ControlError(code: .parseError, message: "\(detail); send one JSON object per line, e.g. {\"execute\":\"status\"} (PROTOCOL.md §2.2)")
    }

    /// The line exceeded `limit` bytes (65,536 on the daemon, §2.2); the
    /// connection closes.
    public static func lineTooLong(limit: Int) -> ControlError {
        ControlError(code: .lineTooLong, message: "line longer than \(limit) bytes without a newline; the connection is closed. Keep each request on one line of at most \(limit) bytes (PROTOCOL.md §2.2)")
    }

    public static func missingArgument(_ name: String) -> ControlError {
        ControlError(code: .missingArgument, message: "argument \"\(name)\" is required")
    }

    /// `why` completes "argument "name" …", e.g. "must be a string, got an integer".
    public static func invalidArgument(_ name: String, _ why: String) -> ControlError {
        ControlError(code: .invalidArgument, message: "argument \"\(name)\" \(why)")
    }

    public static func unknownCommand(_ name: String) -> ControlError {
        ControlError(code: .unknownCommand, message: "unknown command \"\(name)\"; the commands are \(ControlCommand.names.joined(separator: ", ")) (PROTOCOL.md §2.3)")
    }

    /// The one reply to a peer whose credentials are not allowed (§2.1):
    /// who it is, and what to configure to let it in.
    public static func permissionDenied(uid: UInt32, gid: UInt32, pid: Int32) -> ControlError {
        ControlError(code: .permissionDenied, message:
            "uid \(uid) (gid \(gid), pid \(pid)) may not use this daemon: it is not in access.uids and none of its groups is in access.gids; "
            + "add the user to access.uids, or one of its groups to access.gids, in the daemon's configuration (docs/CONFIG.md), "
            + "or connect as an allowed user")
    }

    public static func notAttached(guest: String) -> ControlError {
        ControlError(code: .notAttached, message: "no device is attached as guest \(guest); `status` lists the attached devices")
    }

    /// The guest source-id is taken, by `host`.
    public static func alreadyAttached(guest: String, to host: String) -> ControlError {
        ControlError(code: .alreadyAttached, message: "guest \(guest) is already attached to \(host); detach it first")
    }

    /// The host device is taken, as `guest`.
    public static func alreadyAttached(host: String, as guest: String) -> ControlError {
        ControlError(code: .alreadyAttached, message: "host device \(host) is already attached as guest \(guest); detach it first")
    }

    /// `message` carries the kernel call, errno and hint (§2.2).
    public static func vfioError(_ message: String) -> ControlError {
        ControlError(code: .vfioError, message: message)
    }

    public static var noVMM: ControlError {
        ControlError(code: .noVMM, message: "this command needs the guest IOMMU state, and no VMM has sent it yet (no memory table); start the VMM or wait for it to connect to the event channel")
    }

    public static var shuttingDown: ControlError {
        ControlError(code: .shuttingDown, message: "the daemon is stopping and takes no new work")
    }

    /// One client more than `control.max-clients` (§2.1).
    public static func tooManyClients(limit: Int) -> ControlError {
        ControlError(code: .internal, message: "too many control clients (control.max-clients = \(limit)); try again later, or raise control.max-clients")
    }
}
