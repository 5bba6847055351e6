import VFIO
import VTd

/// The DMA regions a vfio-user client (QEMU's `vfio-user-pci`) asked the
/// server to map, in IOVA order: each already resolved to a host address in
/// memory the client handed over (the front-end maps its file descriptors
/// and checks every range against them; see `VFIOUserMemory`). An address
/// space fed this way follows these regions, not the guest's tables or a
/// notifier VMM: the client's own VT-d emulation has walked the tables.
public typealias ClientDMAMap = IOVAOrderedMap<ShadowEntry>

/// The client's regions, yielded for the merge in `AddressSpace.reconcile`.
/// A region the host IOMMU cannot map (an IOVA outside its usable ranges)
/// is a fault, as a guest leaf there would be.
struct ClientDMAMappings: DesiredMappings {
    let regions: ClientDMAMap
    let limits: IOMMUInfo
    var cursor = ClientDMAMap.Cursor.empty
    var end: UInt64 = 0
    var faults = SyncFaults()

    init(regions: ClientDMAMap, limits: IOMMUInfo) {
        self.regions = regions
        self.limits = limits
    }

    mutating func start(from: UInt64, to: UInt64) {
        cursor = regions.cursor(endingAfter: from)
        end = to
    }

    mutating func next() -> ShadowEntry? {
        while let region = cursor.current, region.iova < end {
            cursor.advance()
            if limits.isUsable(iova: region.iova, size: region.size) { return region }
            faults.append(TranslationFault(reason: .iovaNotUsable, iova: region.iova, value: region.hostAddress,
                                           detail: "the host IOMMU cannot map iova 0x\(String(region.iova, radix: 16)) + 0x\(String(region.size, radix: 16)) (reserved or beyond its address width)"))
        }
        return nil
    }
}
