import VFIO
import VTd

/// One notifier-level event from a VMM that walks the guest tables itself:
/// what QEMU's IOMMU notifiers carry (IOMMUTLBEntry). An empty permission
/// means unmap.
public struct NotifierEvent: Sendable, Equatable {
    public var sourceID: SourceID
    public var iova: UInt64
    public var gpa: UInt64
    /// Bytes; 0 stands for 2^64 (the all-ones address mask of a NOTIFY entry).
    public var size: UInt64
    public var permission: DMAPermission

    public init(sourceID: SourceID, iova: UInt64, gpa: UInt64, size: UInt64, permission: DMAPermission) {
        self.sourceID = sourceID
        self.iova = iova
        self.gpa = gpa
        self.size = size
        self.permission = permission
    }
}
