/// The body of `INVALIDATE` and `NOTIFY` replies (PROTOCOL.md §1.6, "batch
/// result"): 24 bytes, then the failure records.
public struct BatchResultBody: Sendable, Equatable, Hashable {
    /// Wait descriptors reached; each may now be completed in the guest.
    public var waits: UInt32
    /// Index of the refused descriptor or entry, -1 if none.
    public var rejectedIndex: Int32
    /// MAP_DMA calls that succeeded.
    public var maps: UInt32
    /// UNMAP_DMA calls that succeeded.
    public var unmaps: UInt32
    /// Translation faults found (and not mapped).
    public var faults: UInt32
    /// Kernel calls that failed. At most 64 go on the wire (§1.6);
    /// `EventCodec.encodeReply` caps them and says so in the message.
    public var failures: [FailureRecord]

    public init(waits: UInt32 = 0, rejectedIndex: Int32 = -1, maps: UInt32 = 0, unmaps: UInt32 = 0,
                faults: UInt32 = 0, failures: [FailureRecord] = []) {
        self.waits = waits
        self.rejectedIndex = rejectedIndex
        self.maps = maps
        self.unmaps = unmaps
        self.faults = faults
        self.failures = failures
    }

    /// Nothing done, nothing rejected: the body of a refused batch.
    public static let empty = BatchResultBody()

    /// Fixed part of the body on the wire.
    static let fixedWireSize = 24
}
