import Glibc
import Logging
import VFIO
import VTd

/// One guest source-id (bus:dev.fn) bound to its own VFIO container: the guest's
/// translation for that device on one side, the kernel's mappings on the other,
/// and the shadow that records exactly what the kernel holds.
///
/// All syncs funnel into `reconcile`, which merges the guest's translation (in
/// IOVA order) with the shadow (in IOVA order) and issues only the difference.
/// That is what makes a replay of unchanged tables cost zero ioctls, and what
/// keeps every UNMAP naming exactly a mapping that was made.
public final class AddressSpace {
    public let sourceID: SourceID
    public let backend: any DMABackend
    public private(set) var shadow = ShadowMap()
    /// The context entry as last read: the context cache of spec 6.2.2. IOTLB
    /// invalidations are matched against its DID and walk its table; only a
    /// context-cache invalidation (or a replay) reads the entry again.
    public private(set) var context: ContextState = .notPresent
    public internal(set) var faults = FaultLog()
    /// Host IOMMU limits, read from the backend when the space is created.
    public private(set) var limits: IOMMUInfo
    /// Most mappings this space may hold; nil for no limit beyond the kernel's.
    public var mappingQuota: Int?
    /// Successful MAP_DMA / UNMAP_DMA calls over the space's life.
    public private(set) var totalMaps = 0
    public private(set) var totalUnmaps = 0
    /// Notifier mode only: the mappings the VMM notified, in IOVA order, as it
    /// sent them (GPA and permission; the host address is resolved at each
    /// sync, so a new memory table moves them). nil in table mode.
    public internal(set) var notified: NotifiedMap?
    /// vfio-user only: the DMA regions the client asked for, resolved to
    /// host addresses by the front-end. A space that has them follows them
    /// alone: no table walk, invalidation or notifier event touches it.
    /// nil for every other space.
    public internal(set) var clientDMA: ClientDMAMap?
    /// Whether this space is fed by a vfio-user client (`clientDMA`).
    public var isClientFed: Bool { clientDMA != nil }
    /// Where applying a difference is timed: shared by the spaces of one
    /// GuestIOMMU (`GuestIOMMU.backendTiming`), or this space's own.
    public let backendTiming: BackendTiming
    /// Syncs run (a batch that touches this space counts once).
    public internal(set) var syncs = 0
    /// Mappings adopted from a previous process (`adopt`) whose host address
    /// in this process is not known yet, by IOVA: their file is not mapped
    /// here until the VMM sends its memory table again. Their shadow entries
    /// carry host address 0, which no sync ever asks for, so a sync that
    /// runs before they are resolved replaces them exactly.
    public private(set) var unresolvedAdopted: [UInt64: FileLocation] = [:]
    /// Set by the owning `GuestIOMMU`: whether what this space read from
    /// guest RAM is still the guest's (no region lost to a SIGBUS since the
    /// current piece of work began). nil: nothing is checked.
    var readCheck: GuestRAMReadCheck?
    let logger: Logger

    private enum Operation {
        case unmap(ShadowEntry)
        case map(ShadowEntry)
    }
    // Reused between syncs so that a sync with nothing to do allocates nothing.
    private var operations: [Operation] = []

    public init(sourceID: SourceID, backend: any DMABackend, mappingQuota: Int? = nil, timing: BackendTiming = BackendTiming(),
                logger: Logger) throws(VFIOError) {
        self.sourceID = sourceID
        self.backendTiming = timing
        self.backend = backend
        self.mappingQuota = mappingQuota
        self.logger = logger
        limits = try backend.limits()
    }

    // MARK: adoption

    /// Seeds the shadow with what a previous process left in the kernel
    /// (`JournaledBackend.recover`): in IOVA order, disjoint, as the kernel
    /// accepted them. Host addresses are found through `files` where the
    /// file is mapped here already.
    func adopt(_ entries: [MappingJournal.Entry], files: (any HostMemoryFiles)?) {
        precondition(shadow.isEmpty, "adopting into a space that holds mappings")
        for e in entries {
            let host = files?.hostAddress(of: e.location, size: e.size)
            shadow.insert(ShadowEntry(iova: e.iova, size: e.size, hostAddress: host ?? 0, permission: e.permission))
            if host == nil { unresolvedAdopted[e.iova] = e.location }
        }
    }

    /// Gives adopted mappings their host address in `files` (a new memory
    /// table). Those whose file is not in it stay unresolved; the next sync
    /// unmaps them, or replaces them if the guest still wants the IOVA.
    func resolveAdopted(files: (any HostMemoryFiles)?) {
        guard !unresolvedAdopted.isEmpty, let files else { return }
        for (iova, location) in unresolvedAdopted {
            guard let old = shadow.entry(containing: iova), old.iova == iova,
                  let host = files.hostAddress(of: location, size: old.size) else { continue }
            _ = shadow.remove(iova: iova)
            shadow.insert(ShadowEntry(iova: iova, size: old.size, hostAddress: host, permission: old.permission))
            unresolvedAdopted.removeValue(forKey: iova)
        }
    }

    // MARK: context

    /// Reads the context entry again (a context-cache fill). Faults in the root
    /// or context entry are counted.
    func refreshContext(rootTable: UInt64?, memory: GuestRAM?, caps: IOMMUCapabilities) {
        guard let rootTable, let memory else {
            context = .notPresent
            return
        }
        let looked = ContextLookup.lookup(sourceID: sourceID, rootTable: rootTable, memory: memory, caps: caps)
        // A root or context entry read as zero from a lost region is not the
        // guest's: keep the cached entry; the bridge syncs again without it.
        if let readCheck, !readCheck.isIntact { return }
        context = looked
        if case let .invalid(fault) = context {
            faults.record(fault, sourceID: sourceID, logger: logger)
        }
    }

    /// Forgets the cached context (translation disabled or IOMMU reset).
    func dropContext() { context = .notPresent }

    // MARK: syncs

    /// Syncs the whole space against the cached context.
    func syncAll(walker: SecondLevelWalker<GuestRAM>?, report: inout SyncReport) {
        sync(start: 0, end: .max, walker: walker, report: &report)
    }

    /// Syncs [start, end) against the cached context: MAP what is present and
    /// not mapped, UNMAP+MAP what changed, UNMAP what is gone.
    func sync(start: UInt64, end: UInt64, walker: SecondLevelWalker<GuestRAM>?, report: inout SyncReport) {
        guard let walker else {
            unmapEverything(report: &report)
            return
        }
        switch context {
        case .notPresent, .invalid:
            // Spec 3.4.3: no present, valid context entry means the device's
            // requests are blocked, so nothing may stay mapped.
            unmapEverything(report: &report)
        case let .translated(_, table, levels):
            var source = WalkedMappings(walker: walker, table: table, levels: levels, limits: limits)
            // Faults read from a lost region are not the guest's either.
            if reconcile(start: start, end: end, report: &report, source: &source) {
                record(source.faults, report: &report)
            }
        case .passThrough:
            var source = IdentityMappings(memory: walker.memory, limits: limits)
            reconcile(start: start, end: end, report: &report, source: &source)
        }
    }

    /// Notifier mode: syncs [start, end) against what the VMM notified.
    func syncNotified(start: UInt64, end: UInt64, memory: GuestRAM?, report: inout SyncReport) {
        guard let memory, let notified else {
            unmapEverything(report: &report)
            return
        }
        var source = NotifiedMappings(notified: notified, memory: memory, limits: limits)
        reconcile(start: start, end: end, report: &report, source: &source)
        record(source.faults, report: &report)
    }

    /// vfio-user: syncs [start, end) against the client's DMA regions.
    func syncClient(start: UInt64, end: UInt64, report: inout SyncReport) {
        var source = ClientDMAMappings(regions: clientDMA ?? ClientDMAMap(), limits: limits)
        reconcile(start: start, end: end, report: &report, source: &source)
        record(source.faults, report: &report)
    }

    /// Records one notifier event. Returns the IOVA range to sync, or a
    /// reason to refuse it: an unmap that would cut a notified mapping in two
    /// is refused, as type1v2 refuses a bisecting UNMAP_DMA.
    func recordNotification(_ n: NotifierEvent) -> Result<(UInt64, UInt64), NotifierRefusal> {
        if notified == nil { notified = NotifiedMap() }
        let end: UInt64
        if n.size == 0 {
            // The all-ones address mask: the whole 2^64-byte space (QEMU's
            // unmap-everything notification). Unmapping it empties the map;
            // no guest RAM is that large, so mapping it is refused rather
            // than stored as a zero-length entry that would break the map's
            // ordering (found by the FuzzSync fuzzer).
            guard n.iova == 0 else {
                return .failure(NotifierRefusal(reason: "a 2^64-byte range must start at iova 0, not 0x\(String(n.iova, radix: 16))"))
            }
            guard n.permission.isEmpty else {
                return .failure(NotifierRefusal(reason: "a MAP of the whole 2^64-byte IOVA space (address_mask all ones) cannot be guest RAM; unmap with permission 0, or map what the guest mapped"))
            }
            end = .max
        } else {
            let (e, overflow) = n.iova.addingReportingOverflow(n.size)
            guard !overflow else { return .failure(NotifierRefusal(reason: "iova 0x\(String(n.iova, radix: 16)) + size 0x\(String(n.size, radix: 16)) wraps past 2^64")) }
            end = e
        }
        var doomed: [UInt64] = []
        var i = notified!.firstIndex(endingAfter: n.iova)
        while i < notified!.endIndex, notified![i].iova < end {
            let have = notified![i]
            if n.permission.isEmpty, have.iova < n.iova || have.end > end {
                return .failure(NotifierRefusal(reason: "unmap of [0x\(String(n.iova, radix: 16)), 0x\(String(end, radix: 16))) would cut the mapping at 0x\(String(have.iova, radix: 16)) (size 0x\(String(have.size, radix: 16))) in two"))
            }
            doomed.append(have.iova)
            i = notified!.index(after: i)
        }
        var lo = n.iova, hi = end
        for iova in doomed {
            if let removed = notified!.remove(iova: iova) {
                lo = min(lo, removed.iova)
                hi = max(hi, removed.end)
            }
        }
        if !n.permission.isEmpty {
            notified!.insert(NotifiedMapping(iova: n.iova, size: n.size, gpa: n.gpa, permission: n.permission))
        }
        return .success((lo, hi))
    }

    /// Unmaps everything with one call and empties the shadow.
    func unmapEverything(report: inout SyncReport) {
        guard !shadow.isEmpty else { return }
        do {
            try backend.unmapAll()
            shadow.removeAll()
            unresolvedAdopted.removeAll()
            report.unmaps += 1
            totalUnmaps += 1
        } catch {
            report.failures.append(.init(sourceID: sourceID, operation: .unmapAll, iova: 0, size: shadow.mappedBytes, error: error))
            record(TranslationFault(reason: .backendError, value: 0, detail: "\(error)"), report: &report)
        }
    }

    // MARK: the merge

    /// Records a sync's faults: those kept whole one by one, then one per
    /// reason for those only counted.
    private func record(_ found: SyncFaults, report: inout SyncReport) {
        guard !found.isEmpty else { return }
        for fault in found.detailed { record(fault, report: &report) }
        for (reason, n) in found.counted.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            record(TranslationFault(reason: reason, value: UInt64(n),
                                    detail: "\(n) more \(reason) faults in this sync (only the first \(SyncFaults.detailedLimit) of a sync are kept in full)"),
                   count: n, report: &report)
        }
    }

    /// Records `fault`, standing for `count` faults of its reason.
    func record(_ fault: TranslationFault, count: Int = 1, report: inout SyncReport) {
        report.faults += count
        report.faultReasons[fault.reason, default: 0] += count
        faults.record(fault, count: count, sourceID: sourceID, logger: logger)
    }

    /// Merges the desired mappings of [start, end), which `source` yields in
    /// IOVA order, with the shadow, then applies the difference.
    ///
    /// The range grows to cover whole mappings: a shadow entry or a guest leaf
    /// that crosses an edge is taken whole, and the source is run again over
    /// the growth, so a mapping is never bisected and no neighbour is touched.
    /// Generic over the source so that the walk, the merge and the compare
    /// compile to one loop: a replay costs a few nanoseconds per leaf.
    ///
    /// When the source stops early (the walk budget ran out at `stoppedAt`),
    /// [stoppedAt, end) is unknown, not empty: shadow entries from there on
    /// stay as they are (the guest may still have them), no further pass is
    /// run, and the difference found below the stop point is applied. A
    /// shadow entry that starts below it was examined: the walk read the
    /// entry translating its first IOVA, so if the guest no longer has it
    /// whole it is gone, even if it reaches past the stop point. One
    /// exception beyond the stop point: an entry whose host range is not in
    /// guest RAM as installed now (a new memory table moved its region) is
    /// unmapped, since whatever the guest wants there, it is not that.
    ///
    /// `ops` is bounded by the walk: at most one map per leaf yielded (each
    /// leaf costs at least one entry read, so at most the walk budget) and
    /// one unmap per shadow entry in the range (the cursor passes each once).
    /// With a mapping quota, maps stop being planned once the quota is
    /// reached (below), so then it holds at most quota + unmaps entries.
    ///
    /// Returns false when nothing was applied because guest RAM read during
    /// the walk was lost meanwhile (`readCheck`): the plan came from zeros
    /// the guard put in place of the guest's tables.
    @discardableResult
    private func reconcile<Source: DesiredMappings>(start: UInt64, end: UInt64, report: inout SyncReport, source: inout Source) -> Bool {
        var lo = start
        var hi = end
        if let e = shadow.entry(containing: lo) { lo = e.iova }
        if hi > 0, let e = shadow.entry(containing: hi - 1) { hi = max(hi, e.end) }
        // Taken, not copied: a copy would share the buffer with the member,
        // and removeAll(keepingCapacity:) would then allocate a new one.
        var ops: [Operation] = []
        swap(&ops, &operations)
        ops.removeAll(keepingCapacity: true)
        // The quota, checked as the ops are planned: `room` is how many more
        // mappings the space may hold after the ops so far (each planned
        // unmap frees one, each planned map takes one; `apply` runs them in
        // this order). A map that does not fit when its turn comes waits in
        // `deferred` for the unmaps planned after it (the guest replaced
        // mappings at higher IOVAs), and is planned after the last of them
        // if room is left then. What still does not fit is only counted: a
        // guest asking for a million mappings past its quota costs an
        // increment each and one fault with the count, and `ops` holds at
        // most quota + unmaps entries. (`apply` checks the quota again: after
        // a failed unmap the shadow holds more than planned.)
        // (No quota: half of Int's range, which no count of unmaps can overflow.)
        var room = mappingQuota.map { $0 - shadow.count } ?? .max / 2
        var deferred: [ShadowEntry] = []
        var refused = QuotaRefusals()
        // The diff reads the shadow through a cursor that holds its own
        // references; nothing mutates the shadow until `apply`.
        let snapshot = shadow
        var cursor = ShadowMap.Cursor.empty
        var positioned = false
        var walkedTo = lo
        repeat {
            let from = walkedTo
            let to = hi
            source.start(from: from, to: to)
            // The fast path may skip only leaves the merge would match; a
            // pass that starts inside a page must see that page's leaf here.
            let mayFastForward = from == lo || from & 0xfff == 0
            while true {
                if positioned && mayFastForward && cursor.current != nil { source.skipMatching(&cursor, until: to) }
                guard let wanted = source.next() else { break }
                // A leaf that crossed the previous pass's end was taken whole then.
                if from != lo && wanted.iova < from { continue }
                if !positioned {
                    cursor = snapshot.cursor(endingAfter: min(wanted.iova, lo))
                    positioned = true
                }
                var matched = false
                while let have = cursor.current {
                    if have.iova >= wanted.end { break }
                    if have == wanted {
                        matched = true
                    } else {
                        ops.append(.unmap(have))
                        room &+= 1
                        if have.end > hi { hi = have.end }
                    }
                    cursor.advance()
                }
                if !matched {
                    if room > 0 {
                        ops.append(.map(wanted))
                        room &-= 1
                    } else if deferred.count < mappingQuota ?? 0 {
                        // (Room at the end is at most the quota.)
                        deferred.append(wanted)
                    } else {
                        refused.add(wanted)
                    }
                }
                if wanted.end > hi { hi = wanted.end }
            }
            // What the shadow holds in the walked range but the guest no
            // longer does; only up to where the source stopped, if it did.
            let stoppedAt = source.stoppedAt
            let known = stoppedAt.map { min($0, to) } ?? to
            if !positioned {
                cursor = snapshot.cursor(endingAfter: lo)
                positioned = true
            }
            while let have = cursor.current, have.iova < known {
                ops.append(.unmap(have))
                room &+= 1
                if have.end > hi { hi = have.end }
                cursor.advance()
            }
            if stoppedAt != nil {
                // Out of budget: no further pass, whatever `hi` grew to. What
                // lies beyond stays, if it still maps guest RAM. (A full
                // sync follows every new memory table, so after a cut one
                // this scan is what keeps old host addresses out.)
                while let have = cursor.current, have.iova < hi {
                    if !source.mayKeepUnexamined(have) {
                        ops.append(.unmap(have))
                        room &+= 1
                    }
                    cursor.advance()
                }
                break
            }
            walkedTo = to
        } while hi > walkedTo
        for wanted in deferred {
            if room > 0 {
                ops.append(.map(wanted))
                room &-= 1
            } else {
                refused.add(wanted)
            }
        }
        // Drop the snapshot's references before the shadow is edited, so the
        // edits happen in place rather than on a copy.
        cursor = .empty
        _ = consume snapshot
        if let readCheck, !readCheck.isIntact {
            ops.removeAll(keepingCapacity: ops.capacity <= 4096)
            operations = ops
            return false
        }
        apply(ops, refused: &refused, report: &report)
        if refused.count > 0, let first = refused.first, let mappingQuota {
            record(TranslationFault(reason: .quotaExceeded, iova: first.iova, value: first.hostAddress,
                                    detail: refused.count == 1
                                        ? "the address space holds its quota of \(mappingQuota) mappings"
                                        : "\(refused.count) mappings refused in this sync, the first at this iova: the address space holds its quota of \(mappingQuota) mappings"),
                   count: refused.count, report: &report)
        }
        // Keep a small buffer for the next sync; give a large one back (a
        // full sync of a million leaves needs tens of MiB only for a moment).
        ops.removeAll(keepingCapacity: ops.capacity <= 4096)
        operations = ops
        return true
    }

    /// Maps one sync refused for the quota: counted, reported as one fault.
    private struct QuotaRefusals {
        var count = 0
        var first: ShadowEntry?
        mutating func add(_ entry: ShadowEntry) {
            if count == 0 || entry.iova < first!.iova { first = entry }
            count += 1
        }
    }

    private func apply(_ ops: [Operation], refused: inout QuotaRefusals, report: inout SyncReport) {
        guard !ops.isEmpty else { return }
        // Timed as a whole (two clock reads per sync, not per call): the
        // kernel calls and the shadow edits that follow each of them.
        let start = ContinuousClock.now
        defer {
            backendTiming.record(from: start, to: ContinuousClock.now)
        }
        // Once the kernel refuses a map for want of a resource (ENOSPC: the
        // type1 dma_entry_limit; ENOMEM: RLIMIT_MEMLOCK), the maps after it
        // would fail alike: a guest mapping far past the limit would cost an
        // ioctl, an error with its hint (a sysfs read for ENOSPC) and a fault
        // per page. They are not attempted until an unmap frees something;
        // one failure record counts them, and a replay retries them.
        var exhausted: VFIOError?
        var skipped = 0
        var firstSkipped: ShadowEntry?
        defer {
            if let exhausted, skipped > 0, let first = firstSkipped {
                var error = exhausted
                error.detail = "\(skipped) more map(s) from iova 0x\(String(first.iova, radix: 16)) not attempted after the kernel refused one (\(String(cString: strerror(exhausted.errno)))); a replay retries them"
                report.failures.append(.init(sourceID: sourceID, operation: .map, iova: first.iova, size: first.size, error: error))
                record(TranslationFault(reason: .backendError, iova: first.iova, value: first.hostAddress, detail: error.detail ?? ""), report: &report)
            }
        }
        for op in ops {
            switch op {
            case let .unmap(entry):
                do {
                    try backend.unmap(iova: entry.iova, size: entry.size)
                    shadow.remove(iova: entry.iova)
                    if !unresolvedAdopted.isEmpty { unresolvedAdopted.removeValue(forKey: entry.iova) }
                    report.unmaps += 1
                    totalUnmaps += 1
                    exhausted = nil
                } catch {
                    // The kernel still holds it, so the shadow does too.
                    report.failures.append(.init(sourceID: sourceID, operation: .unmap, iova: entry.iova, size: entry.size, error: error))
                    record(TranslationFault(reason: .backendError, iova: entry.iova, value: entry.hostAddress, detail: "host address 0x\(String(entry.hostAddress, radix: 16)): \(error)"), report: &report)
                }
            case let .map(entry):
                if shadow.overlaps(iova: entry.iova, end: entry.end) {
                    // An earlier unmap failed: mapping now would be refused
                    // (EEXIST) or, worse, half-succeed. Leave it to a replay.
                    let error = VFIOError(operation: "VFIO_IOMMU_MAP_DMA", subject: "device \(sourceID)", errno: EEXIST,
                                          detail: "iova 0x\(String(entry.iova, radix: 16)) overlaps a mapping whose unmap failed",
                                          hint: "a replay retries once the unmap succeeds")
                    report.failures.append(.init(sourceID: sourceID, operation: .map, iova: entry.iova, size: entry.size, error: error))
                    continue
                }
                if let mappingQuota, shadow.count >= mappingQuota {
                    refused.add(entry)
                    continue
                }
                if exhausted != nil {
                    if firstSkipped == nil { firstSkipped = entry }
                    skipped += 1
                    continue
                }
                do {
                    try backend.map(iova: entry.iova, size: entry.size, hostAddress: entry.hostAddress, permission: entry.permission)
                    shadow.insert(entry)
                    report.maps += 1
                    totalMaps += 1
                } catch {
                    if error.errno == ENOSPC || error.errno == ENOMEM { exhausted = error }
                    report.failures.append(.init(sourceID: sourceID, operation: .map, iova: entry.iova, size: entry.size, error: error))
                    record(TranslationFault(reason: .backendError, iova: entry.iova, value: entry.hostAddress, detail: "host address 0x\(String(entry.hostAddress, radix: 16)): \(error)"), report: &report)
                }
            }
        }
    }
}

/// Why a notifier event was refused.
struct NotifierRefusal: Error {
    var reason: String
}
