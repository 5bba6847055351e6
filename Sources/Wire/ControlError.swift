/// An error reply on the control socket (PROTOCOL.md §2.2):
/// `{"error":{"code":…,"message":…}}`. `code` is one of §2.2's list; the
/// message says what was wrong and, where it can, what to do.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    /// The error codes of §2.2.
    public enum Code {
        public static let parseError = "parse-error"
        public static let lineTooLong = "line-too-long"
        public static let missingArgument = "missing-argument"
        public static let invalidArgument = "invalid-argument"
        public static let unknownCommand = "unknown-command"
        public static let permissionDenied = "permission-denied"
        public static let notAttached = "not-attached"
        public static let alreadyAttached = "already-attached"
        public static let vfioError = "vfio-error"
        public static let cachingModeRequired = "caching-mode-required"
        public static let noVMM = "no-vmm"
        public static let shuttingDown = "shutting-down"
        public static let `internal` = "internal"

        public static let all: [String] = [
            parseError, lineTooLong, missingArgument, invalidArgument, unknownCommand, permissionDenied,
            notAttached, alreadyAttached, vfioError, cachingModeRequired, noVMM, shuttingDown, `internal`,
        ]
    }

    // MARK: - Constructors, one per code

    /// The line is not JSON, or not a JSON object; `detail` says where.
    public static func parseError(_ detail: String) -> ControlError {
        ControlError(code: Code.parseError, message: "\(detail); send one JSON object per line, e.g. {\"execute\":\"status\"} (PROTOCOL.md §2.2)")
    }

    /// The line exceeded the 65,536-byte limit (§2.2); the connection closes.
    public static var lineTooLong: ControlError { lineTooLong(limit: LineDecoder.defaultMaxLineBytes) }

    public static func lineTooLong(limit: Int) -> ControlError {
        ControlError(code: Code.lineTooLong, message: "line longer than \(limit) bytes without a newline; the connection is closed. Keep each request on one line of at most \(limit) bytes (PROTOCOL.md §2.2)")
    }

    public static func missingArgument(_ name: String) -> ControlError {
        ControlError(code: Code.missingArgument, message: "argument \"\(name)\" is required")
    }

    /// `why` completes "argument "name" …", e.g. "must be a string, got an integer".
    public static func invalidArgument(_ name: String, _ why: String) -> ControlError {
        ControlError(code: Code.invalidArgument, message: "argument \"\(name)\" \(why)")
    }

    public static func unknownCommand(_ name: String) -> ControlError {
        ControlError(code: Code.unknownCommand, message: "unknown command \"\(name)\"; the commands are \(ControlCommand.names.joined(separator: ", ")) (PROTOCOL.md §2.3)")
    }

    public static var permissionDenied: ControlError {
        ControlError(code: Code.permissionDenied, message: "this user may not use the control socket; connect as a user or group allowed by the configuration")
    }

    public static func notAttached(guest: String) -> ControlError {
        ControlError(code: Code.notAttached, message: "no device is attached as guest \(guest); `status` lists the attached devices")
    }

    public static func alreadyAttached(guest: String) -> ControlError {
        ControlError(code: Code.alreadyAttached, message: "a device is already attached as guest \(guest); detach it first")
    }

    /// `message` carries the kernel call, errno and hint (§2.2).
    public static func vfioError(_ message: String) -> ControlError {
        ControlError(code: Code.vfioError, message: message)
    }

    public static var cachingModeRequired: ControlError {
        ControlError(code: Code.cachingModeRequired, message: "the guest IOMMU does not have caching mode (CAP.CM = 0); enable it in the VMM (e.g. QEMU intel-iommu caching-mode=on)")
    }

    public static var noVMM: ControlError {
        ControlError(code: Code.noVMM, message: "this command needs the guest IOMMU state, and no VMM has sent it yet; start the VMM or wait for it to connect to the event channel")
    }

    public static var shuttingDown: ControlError {
        ControlError(code: Code.shuttingDown, message: "the daemon is shutting down and takes no new work")
    }

    public static func `internal`(_ message: String) -> ControlError {
        ControlError(code: Code.internal, message: message)
    }
}
