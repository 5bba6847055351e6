import VFIO
import VTd

/// What one sync did, for acks, status and tests.
public struct SyncReport: Sendable, Equatable {
    /// MAP_DMA calls that succeeded.
    public var maps = 0
    /// UNMAP_DMA calls that succeeded (unmap-all counts as one).
    public var unmaps = 0
    /// Calls the kernel refused, with why.
    public var failures: [Failure] = []
    /// Faults found in the guest's tables during this sync.
    public var faults = 0
    /// `faults` by reason (the metrics label them); the values add up to
    /// `faults`.
    public var faultReasons: [FaultReason: Int] = [:]
    /// Guest RAM regions found lost (their file shrank under us) during this
    /// work; each is now out of the memory table.
    public var lostRegions: [GuestRAM.LostRegion] = []

    public init() {}

    public struct Failure: Sendable, Equatable, CustomStringConvertible {
        public var sourceID: SourceID
        public var operation: Operation
        public var iova: UInt64
        public var size: UInt64
        public var error: VFIOError
        public enum Operation: String, Sendable { case map, unmap, unmapAll = "unmap-all" }
        public var description: String {
            "\(sourceID) \(operation.rawValue) iova=0x\(String(iova, radix: 16)) size=0x\(String(size, radix: 16)): \(error)"
        }
    }

    public var ioctls: Int { maps + unmaps + failures.count }

    public mutating func merge(_ other: SyncReport) {
        maps += other.maps
        unmaps += other.unmaps
        failures += other.failures
        faults += other.faults
        faultReasons.merge(other.faultReasons, uniquingKeysWith: +)
        lostRegions += other.lostRegions
    }
}
