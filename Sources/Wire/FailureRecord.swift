/// One kernel call that failed during a batch (PROTOCOL.md §1.6, "failure
/// record"): 32 bytes plus the UTF-8 `reason`.
public struct FailureRecord: Sendable, Equatable, Hashable {
    /// The device (bus << 8 | device << 3 | function).
    public var sourceID: UInt16
    /// An `Operation` raw value: 1 map, 2 unmap, 3 unmap-all.
    public var operation: UInt8
    /// The kernel's errno; 0 when the daemon's own check refused the operation.
    public var errno: Int32
    public var iova: UInt64
    public var size: UInt64
    /// The kernel call, errno text and hint. Sent truncated to 1024 bytes.
    public var reason: String

    public init(sourceID: UInt16, operation: UInt8, errno: Int32, iova: UInt64, size: UInt64, reason: String) {
        self.sourceID = sourceID
        self.operation = operation
        self.errno = errno
        self.iova = iova
        self.size = size
        self.reason = reason
    }

    public init(sourceID: UInt16, operation: Operation, errno: Int32, iova: UInt64, size: UInt64, reason: String) {
        self.init(sourceID: sourceID, operation: operation.rawValue, errno: errno, iova: iova, size: size, reason: reason)
    }

    /// The `operation` codes of §1.6.
    public enum Operation: UInt8, Sendable, CaseIterable {
        case map = 1
        case unmap = 2
        case unmapAll = 3
    }

    /// `operation` as a known code, or nil.
    public var kind: Operation? { Operation(rawValue: operation) }

    /// Fixed part of a record on the wire.
    static let fixedWireSize = 32
}
