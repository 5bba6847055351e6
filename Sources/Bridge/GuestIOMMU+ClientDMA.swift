import Glibc
import VTd

/// Why a vfio-user client's DMA_MAP or DMA_UNMAP was not done, as the errno
/// its error reply carries and the text the daemon logs.
public struct ClientDMAError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errno: Int32
    public var message: String
    /// What the attempt did in the kernel before it was given up.
    public var report: SyncReport

    public init(errno: Int32, message: String, report: SyncReport = SyncReport()) {
        self.errno = errno
        self.message = message
        self.report = report
    }

    public var description: String { "\(message) (\(String(cString: strerror(errno))))" }
}

/// What a client's DMA_UNMAP did.
public struct ClientUnmapResult: Sendable, Equatable {
    public var report = SyncReport()
    /// Regions wholly inside the range, removed.
    public var removed = 0
    /// Regions that crossed an edge of the range: each was unmapped whole
    /// and what lies outside the range mapped again, so that nothing inside
    /// it stays reachable.
    public var straddled = 0
    /// Bytes of regions the range covered (whole regions and the cut parts).
    public var bytes: UInt64 = 0

    public init() {}
}

/// The vfio-user front-end's way into the bridge (`VFIOUserServer` in the
/// daemon). The client (QEMU's `vfio-user-pci` behind its own caching-mode
/// VT-d emulation) walks the guest's tables and sends one DMA_MAP per leaf
/// and DMA_UNMAPs for what went away. Every call syncs the touched range of
/// the shadow at once, so its reply follows the kernel, as an invalidation's
/// ack does.
extension GuestIOMMU {
    /// Maps one client DMA region, already resolved to a host address in
    /// memory the client handed over. Overlapping an existing region is
    /// refused (EEXIST), as type1's MAP_DMA refuses it. When the kernel,
    /// the quota or the host's usable IOVA ranges refuse it, the region is
    /// forgotten again and the error says why: the client's view and the
    /// kernel's stay the same.
    public func clientMap(_ sourceID: SourceID, _ region: ShadowEntry) -> Result<SyncReport, ClientDMAError> {
        guard let space = spaces[sourceID], space.clientDMA != nil else {
            return .failure(ClientDMAError(errno: ENODEV, message: "device \(sourceID) is not fed by a vfio-user client"))
        }
        if space.clientDMA!.overlaps(iova: region.iova, end: region.end) {
            let other = space.clientDMA!.cursor(endingAfter: region.iova).current!
            return .failure(ClientDMAError(errno: EEXIST, message:
                "DMA_MAP of [\(hex(region.iova)), \(hex(region.end))) overlaps the region already mapped at [\(hex(other.iova)), \(hex(other.end))); unmap it first"))
        }
        space.clientDMA!.insert(region)
        space.syncs += 1
        var report = SyncReport()
        space.syncClient(start: region.iova, end: region.end, report: &report)
        if space.shadow.entry(containing: region.iova) == region { return .success(report) }
        // Not mapped: forget it, so that the client's next view is the kernel's.
        _ = space.clientDMA!.remove(iova: region.iova)
        let why: ClientDMAError
        if let failure = report.failures.last {
            why = ClientDMAError(errno: failure.error.errno == 0 ? EIO : failure.error.errno,
                                 message: "DMA_MAP of [\(hex(region.iova)), \(hex(region.end))): the kernel refused it: \(failure.error)", report: report)
        } else if !space.limits.isUsable(iova: region.iova, size: region.size) {
            why = ClientDMAError(errno: EINVAL, message:
                "DMA_MAP of [\(hex(region.iova)), \(hex(region.end))): the host IOMMU cannot map that IOVA range (reserved, or beyond its address width)", report: report)
        } else if let quota = space.mappingQuota, space.shadow.count >= quota {
            why = ClientDMAError(errno: ENOSPC, message:
                "DMA_MAP of [\(hex(region.iova)), \(hex(region.end))): the device holds its quota of \(quota) mappings", report: report)
        } else {
            why = ClientDMAError(errno: EIO, message: "DMA_MAP of [\(hex(region.iova)), \(hex(region.end))) was not applied", report: report)
        }
        return .failure(why)
    }

    /// Unmaps every region inside [iova, end) (`end` 0 means 2^64). A
    /// region that crosses an edge of the range is unmapped whole and what
    /// lies outside the range is mapped again: QEMU believes the range is
    /// gone, so no part of it may stay reachable, while what it still
    /// believes mapped stays mapped. A range that holds nothing is not an
    /// error (QEMU's translation-off unmaps cover much that it never
    /// mapped; type1's UNMAP_DMA answers such a range with size 0).
    ///
    /// Fails only when the kernel refused an unmap: part of the range may
    /// then still be reachable, and the error says so.
    public func clientUnmap(_ sourceID: SourceID, iova: UInt64, end: UInt64) -> Result<ClientUnmapResult, ClientDMAError> {
        guard let space = spaces[sourceID], space.clientDMA != nil else {
            return .failure(ClientDMAError(errno: ENODEV, message: "device \(sourceID) is not fed by a vfio-user client"))
        }
        let last = end == 0 ? UInt64.max : end - 1
        var result = ClientUnmapResult()
        var covered: [ShadowEntry] = []
        var i = space.clientDMA!.firstIndex(endingAfter: iova)
        while i < space.clientDMA!.endIndex, space.clientDMA![i].iova <= last {
            covered.append(space.clientDMA![i])
            i = space.clientDMA!.index(after: i)
        }
        guard !covered.isEmpty else { return .success(result) }
        var lo = UInt64.max, hi: UInt64 = 0
        for region in covered {
            _ = space.clientDMA!.remove(iova: region.iova)
            lo = min(lo, region.iova)
            hi = max(hi, region.end)
            let regionLast = region.end == .max ? UInt64.max : region.end - 1
            let cutsBelow = region.iova < iova
            let cutsAbove = regionLast > last
            if cutsBelow || cutsAbove {
                result.straddled += 1
                if cutsBelow {
                    space.clientDMA!.insert(ShadowEntry(iova: region.iova, size: iova - region.iova,
                                                        hostAddress: region.hostAddress, permission: region.permission))
                }
                if cutsAbove {
                    let offset = last + 1 - region.iova
                    space.clientDMA!.insert(ShadowEntry(iova: last + 1, size: region.size - offset,
                                                        hostAddress: region.hostAddress + offset, permission: region.permission))
                }
                result.bytes += min(regionLast, last) - max(region.iova, iova) + 1
            } else {
                result.removed += 1
                result.bytes += region.size
            }
        }
        space.syncs += 1
        space.syncClient(start: lo, end: hi, report: &result.report)
        // Parts outside the range that could not be mapped again are not
        // mapped: forget them, so that the client's next view is the kernel's.
        var check = space.clientDMA!.firstIndex(endingAfter: lo)
        var lost: [UInt64] = []
        while check < space.clientDMA!.endIndex, space.clientDMA![check].iova < hi {
            let region = space.clientDMA![check]
            if space.shadow.entry(containing: region.iova) != region { lost.append(region.iova) }
            check = space.clientDMA!.index(after: check)
        }
        for iova in lost { _ = space.clientDMA!.remove(iova: iova) }
        if space.shadow.overlaps(iova: iova, end: end == 0 ? .max : end),
           let failure = result.report.failures.first(where: { $0.operation != .map }) {
            return .failure(ClientDMAError(errno: failure.error.errno == 0 ? EIO : failure.error.errno, message:
                "DMA_UNMAP of [\(hex(iova)), \(end == 0 ? "2^64" : hex(end))): the kernel refused to unmap [\(hex(failure.iova)), \(hex(failure.iova &+ failure.size))), which stays reachable: \(failure.error)",
                report: result.report))
        }
        return .success(result)
    }

    /// The client went away: every region of `sourceID` is unmapped, and
    /// the space waits, empty, for the next client.
    public func clientDisconnected(_ sourceID: SourceID) -> SyncReport {
        guard let space = spaces[sourceID], space.clientDMA != nil else { return SyncReport() }
        space.clientDMA = ClientDMAMap()
        var report = SyncReport()
        // One UNMAP_DMA of everything rather than one per region.
        space.unmapEverything(report: &report)
        return report
    }
}

extension GuestIOMMU {
    /// A vfio-user session carried over a restart: the client's regions are
    /// the adopted mappings whose files the session's memory holds again.
    /// One sync then unmaps, exactly, any it does not (whose file was not
    /// handed over); over a complete hand-over it makes no call.
    public func adoptClientRegions(_ sourceID: SourceID) -> SyncReport {
        guard let space = spaces[sourceID], space.clientDMA != nil else { return SyncReport() }
        var regions = ClientDMAMap()
        space.shadow.forEach { entry in
            if space.unresolvedAdopted[entry.iova] == nil { regions.insert(entry) }
        }
        space.clientDMA = regions
        var report = SyncReport()
        space.syncClient(start: 0, end: .max, report: &report)
        return report
    }

    /// Records a fault the front-end found in a client's request (a DMA_MAP
    /// without memory) on the device's space, where status shows it.
    public func clientFault(_ sourceID: SourceID, _ fault: TranslationFault) -> SyncReport {
        var report = SyncReport()
        spaces[sourceID]?.record(fault, report: &report)
        return report
    }
}
