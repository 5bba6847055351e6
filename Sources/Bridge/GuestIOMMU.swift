import Logging
import VFIO
import VTd

/// The daemon's model of one VM's emulated VT-d unit: its capabilities, its
/// guest RAM, its root table, and an address space per attached device.
///
/// Guest events come in here (memory table, root pointer, translation
/// enable, invalidation batches, replays) and leave as map/unmap calls on
/// each address space's backend. It is not thread-safe: the daemon drives it
/// from one task, which is also what orders a batch before its ack.
public final class GuestIOMMU {
    public private(set) var caps: IOMMUCapabilities
    public private(set) var memory: GuestRAM?
    public private(set) var rootTable: UInt64?
    public private(set) var translationEnabled = false
    public private(set) var spaces: [SourceID: AddressSpace] = [:]
    /// Time in the backend, over every space (the daemon's stage clocks).
    public let backendTiming = BackendTiming()
    /// Where the guest's mappings come from: its tables, or a VMM's
    /// notifier events (the VMM walks the tables itself and invalidation
    /// descriptors are not used).
    public private(set) var source: TranslationSource = .tables
    /// While suspended (a VMM is re-sending its state after connecting),
    /// state changes are recorded but nothing is synced; `resumeSync` then
    /// syncs once against the complete state.
    public private(set) var syncSuspended = false
    /// Most paging entries one sync of one address space may read (config
    /// key walk-budget). A walk that reaches it stops with a
    /// `walkBudgetExceeded` fault and leaves the mappings beyond the stop
    /// point as they were (see `WalkBudget`). Takes effect at the next sync.
    public var walkBudget: Int {
        didSet {
            precondition(walkBudget >= 1, "a walk budget is at least one entry")
            walker = makeWalker()
        }
    }
    let logger: Logger
    private var walker: SecondLevelWalker<GuestRAM>?
    /// Shared with every address space: whether guest RAM read since the
    /// current piece of work began is still the guest's (see `guardingRAM`).
    private let readCheck = GuestRAMReadCheck()

    public init(caps: IOMMUCapabilities, walkBudget: Int = WalkBudget.defaultEntries, logger: Logger) throws(BridgeError) {
        try Self.check(caps)
        precondition(walkBudget >= 1, "a walk budget is at least one entry")
        self.caps = caps
        self.walkBudget = walkBudget
        self.logger = logger
    }

    private func makeWalker() -> SecondLevelWalker<GuestRAM>? {
        memory.map { SecondLevelWalker(memory: $0, caps: caps, budget: walkBudget) }
    }

    /// The one place that accepts or refuses a guest IOMMU's capabilities.
    ///
    /// Shadowing requires CAP.CM=1: without caching mode the guest maps pages
    /// without issuing an invalidation, and the bridge would never learn of
    /// them (the check QEMU's 2017 vfio series added). The walker handles 3-,
    /// 4- and 5-level tables; CAP.SAGAW must offer at least one of them, or
    /// no context entry the guest could write would be walkable (spec 10.4.2).
    public static func check(_ caps: IOMMUCapabilities) throws(BridgeError) {
        guard caps.cachingMode else {
            throw BridgeError(.cachingModeRequired,
                              "the guest IOMMU does not advertise caching mode (CAP.CM=0), so guest mappings cannot be shadowed; enable it in the VMM (QEMU: -device intel-iommu,caching-mode=on)")
        }
        guard !caps.supportedLevels.isDisjoint(with: [3, 4, 5]) else {
            throw BridgeError(.unsupportedLevels, "CAP.SAGAW advertises no 3-, 4- or 5-level table support")
        }
    }

    /// A (re)connecting VMM announces its IOMMU and where the mappings will
    /// come from. The address spaces and their shadows stay; the next sync
    /// reads the tables (or the notified mappings) under the new rules.
    /// Changing the source forgets what the old one said.
    public func setCapabilities(_ caps: IOMMUCapabilities, source: TranslationSource) throws(BridgeError) {
        try Self.check(caps)
        self.caps = caps
        walker = makeWalker()
        if source != self.source {
            self.source = source
            for space in spaces.values { space.notified = source.keepsNotifiedMappings ? NotifiedMap() : nil }
        }
    }

    /// Stops syncing until `resumeSync`: state messages are only recorded.
    public func suspendSync() { syncSuspended = true }

    /// Ends a suspension with one full sync of every device. A loading
    /// session that gets here is complete: its state is the one in force.
    public func resumeSync() -> SyncReport {
        syncSuspended = false
        checkpoint = nil
        abandonedMemory = nil
        return guardingRAM { refreshAll(&$0) }
    }

    // MARK: loading sessions

    /// The guest state of the last completed session, kept while a VMM
    /// loads a new one (between HELLO and READY).
    private struct Checkpoint {
        var caps: IOMMUCapabilities
        var source: TranslationSource
        var memory: GuestRAM?
        var rootTable: UInt64?
        var translationEnabled: Bool
        var syncSuspended: Bool
        var notified: [SourceID: NotifiedMap?]
    }

    private var checkpoint: Checkpoint?

    /// Guest RAM that a loading session sent and that was dropped with it.
    /// It is in force nowhere; it is kept only so that the next memory
    /// table naming the same files maps them at the same host addresses
    /// (`memoryToReuse`). That matters after a restart: a loading VMM's
    /// table resolves adopted mappings to host addresses in it, and the
    /// next session must find the same addresses or remap them all.
    public private(set) var abandonedMemory: GuestRAM?

    /// The mappings of files a new memory table should reuse
    /// (`GuestRAM.init(_:reusing:)`).
    public var memoryToReuse: GuestRAM? { memory ?? abandonedMemory }

    /// A VMM's HELLO: takes its capabilities and mapping source and starts
    /// loading (no sync until `resumeSync`). The state in force is kept
    /// first, so that `abandonLoading` can return to it; a second HELLO
    /// before READY keeps the first one's checkpoint, which is still the
    /// last completed state.
    public func beginLoading(_ caps: IOMMUCapabilities, source: TranslationSource) throws(BridgeError) {
        try Self.check(caps)
        if checkpoint == nil {
            checkpoint = Checkpoint(caps: self.caps, source: self.source, memory: memory, rootTable: rootTable,
                                    translationEnabled: translationEnabled, syncSuspended: syncSuspended,
                                    notified: spaces.mapValues(\.notified))
        }
        try setCapabilities(caps, source: source)
        suspendSync()
    }

    /// The loading VMM went away before READY. What it sent is forgotten
    /// and the last completed session's state is in force again, so a VMM
    /// that crashes while re-sending its state loses no mapping: the next
    /// session's READY compares against what the kernel holds, not against
    /// a half-sent table. When that state was live (not itself waiting for
    /// a READY) every device is synced against it, which over unchanged
    /// tables makes no kernel call and otherwise undoes what a replay made
    /// meanwhile from the unfinished state.
    public func abandonLoading() -> SyncReport {
        guard let saved = checkpoint else { return SyncReport() }
        checkpoint = nil
        if let memory, memory !== saved.memory { abandonedMemory = memory }
        caps = saved.caps
        source = saved.source
        memory = saved.memory
        rootTable = saved.rootTable
        translationEnabled = saved.translationEnabled
        syncSuspended = saved.syncSuspended
        walker = makeWalker()
        for (sid, space) in spaces where !space.isClientFed {
            // A device attached while loading starts empty in the restored mode.
            if let kept = saved.notified[sid] {
                space.notified = kept
            } else {
                space.notified = source.keepsNotifiedMappings ? NotifiedMap() : nil
            }
        }
        return guardingRAM { refreshAll(&$0) }
    }

    // MARK: guest state

    /// Installs (or replaces) the guest memory table. Host addresses may have
    /// changed, so every space is synced; mappings whose GPA, host address
    /// and IOVA are unchanged stay as they are.
    public func setMemory(_ memory: GuestRAM?) -> SyncReport {
        self.memory = memory
        abandonedMemory = nil
        walker = makeWalker()
        // Mappings adopted after a restart find their host address in the
        // files the reconnecting VMM sent again, before the sync compares.
        for space in spaces.values where !space.unresolvedAdopted.isEmpty && !space.isClientFed {
            space.resolveAdopted(files: memory)
        }
        return guardingRAM { refreshAll(&$0) }
    }

    /// The guest set a root-table pointer (GCMD.SRTP). Hardware drops its
    /// context cache on the next global invalidation; we refresh now.
    public func setRootTable(_ gpa: UInt64?) -> SyncReport {
        rootTable = gpa
        return guardingRAM { refreshAll(&$0) }
    }

    /// GCMD.TE. While translation is off nothing is mapped: DMA stays blocked
    /// until the guest has programmed its tables and turned translation on.
    public func setTranslationEnabled(_ enabled: Bool) -> SyncReport {
        translationEnabled = enabled
        // A VMM in notifier mode sends no unmaps for a disabled IOMMU: forget
        // what it notified, as the guest's translation is gone.
        if !enabled && source.keepsNotifiedMappings { for space in spaces.values { space.notified = NotifiedMap() } }
        return guardingRAM { refreshAll(&$0) }
    }

    /// The guest IOMMU was reset: no root table, translation off, nothing mapped.
    public func reset() -> SyncReport {
        rootTable = nil
        translationEnabled = false
        if source.keepsNotifiedMappings { for space in spaces.values { space.notified = NotifiedMap() } }
        return guardingRAM { refreshAll(&$0) }
    }

    private var activeWalker: SecondLevelWalker<GuestRAM>? {
        translationEnabled && rootTable != nil ? walker : nil
    }

    private func refreshAll(_ report: inout SyncReport) {
        guard !syncSuspended else { return }
        for sid in spaces.keys.sorted() { fullSync(spaces[sid]!, report: &report) }
    }

    // MARK: guest RAM that goes away

    /// Runs `work`, which may read guest RAM, and returns what it did.
    ///
    /// The VMM owns the files behind guest RAM and may shrink one at any
    /// time; the next read past its end raises SIGBUS. `GuestRAMGuard` turns
    /// that into zeros and marks the region lost, and each step of `work`
    /// that acts on what it read checks `readCheck` first, so nothing read
    /// from the lost region was applied. Here the lost region leaves the
    /// memory table (what it backed is faulted, not mapped, and mappings
    /// into it are unmapped by the sync), every space records a
    /// `guest-ram-lost` fault, and every space is synced again against the
    /// remaining RAM, which covers whatever `work` left undone. Each round
    /// drops at least one region; a loss in a table other than ours (a
    /// replaced one still mapped) costs one more round.
    ///
    /// A region lost outside our work (another reader of the same mapping)
    /// would read as zeros without a new fault, so lost regions are also
    /// dropped before `work` starts.
    private func guardingRAM(_ work: (inout SyncReport) -> Void) -> SyncReport {
        var report = SyncReport()
        if let memory, let reduced = memory.removingLostRegions() {
            dropLostRegions(into: reduced, report: &report)
        }
        readCheck.restart()
        work(&report)
        var rounds = 0
        while !readCheck.isIntact, rounds <= (memory?.regions.count ?? 0) {
            rounds += 1
            if let memory, let reduced = memory.removingLostRegions() {
                dropLostRegions(into: reduced, report: &report)
            }
            readCheck.restart()
            refreshAll(&report)
        }
        return report
    }

    private func dropLostRegions(into reduced: GuestRAM, report: inout SyncReport) {
        let known = memory?.lostRegions.count ?? 0
        memory = reduced
        walker = makeWalker()
        for lost in reduced.lostRegions.dropFirst(known) {
            logger.error("guest RAM region lost; its mappings are removed and it is no longer mapped",
                         metadata: ["gpa": "0x\(String(lost.gpa, radix: 16))", "size": "0x\(String(lost.size, radix: 16))",
                                    "fault-offset": "0x\(String(lost.faultOffset, radix: 16))", "reason": "\(lost)"])
            report.lostRegions.append(lost)
            for sid in spaces.keys.sorted() {
                spaces[sid]!.record(TranslationFault(reason: .guestRAMLost, value: lost.gpa, detail: lost.description), report: &report)
            }
        }
    }

    private func fullSync(_ space: AddressSpace, report: inout SyncReport, counted: Bool = true) {
        if counted { space.syncs += 1 }
        if space.isClientFed {
            space.syncClient(start: 0, end: .max, report: &report)
            return
        }
        switch source {
        case .notifier:
            // GCMD.TE clear: DMA is not translated by the guest IOMMU, so no
            // notified mapping stands (none is kept: see `notify`).
            space.syncNotified(start: 0, end: .max, memory: translationEnabled ? memory : nil, report: &report)
            return
        case .tables:
            break
        }
        if activeWalker == nil {
            space.dropContext()
        } else {
            space.refreshContext(rootTable: rootTable, memory: memory, caps: caps)
        }
        space.syncAll(walker: activeWalker, report: &report)
    }

    // MARK: devices

    /// Creates the address space of `sourceID` over `backend` and syncs it from
    /// the guest tables.
    @discardableResult
    /// With `clientFed`, the space follows the DMA regions of a vfio-user
    /// client instead (`clientMap`, `clientUnmap`), starting with none.
    ///
    /// With `adopting`, the kernel already holds those mappings (a previous
    /// process made them; `JournaledBackend.recover` read them back): the
    /// shadow starts with them and no sync runs now, so nothing is unmapped
    /// until the guest's state is known again. Call `suspendSync` first;
    /// the VMM's READY then syncs, and over unchanged tables makes no call.
    public func attach(_ sourceID: SourceID, backend: any DMABackend, mappingQuota: Int? = nil,
                       faultLogCapacity: Int = 32, clientFed: Bool = false,
                       adopting adopted: [MappingJournal.Entry]? = nil,
                       clientFiles: (any HostMemoryFiles)? = nil) throws(BridgeError) -> SyncReport {
        guard spaces[sourceID] == nil else {
            throw BridgeError(.alreadyAttached, "device \(sourceID) is already attached; detach it first")
        }
        let space: AddressSpace
        do {
            space = try AddressSpace(sourceID: sourceID, backend: backend, mappingQuota: mappingQuota,
                                     timing: backendTiming, logger: logger)
        } catch {
            throw BridgeError(.backend, "attaching \(sourceID): \(error)")
        }
        space.faults = FaultLog(recentCapacity: faultLogCapacity)
        space.readCheck = readCheck
        if source.keepsNotifiedMappings { space.notified = NotifiedMap() }
        if clientFed { space.clientDMA = ClientDMAMap() }
        spaces[sourceID] = space
        if let adopted {
            space.adopt(adopted, files: clientFed ? clientFiles : memory)
            return SyncReport()
        }
        return guardingRAM { if !syncSuspended { fullSync(space, report: &$0) } }
    }

    /// Unmaps everything of `sourceID` and forgets it.
    @discardableResult
    public func detach(_ sourceID: SourceID) throws(BridgeError) -> SyncReport {
        guard let space = spaces.removeValue(forKey: sourceID) else {
            throw BridgeError(.notAttached, "device \(sourceID) is not attached")
        }
        // Forgotten by a loading session's checkpoint too: attached again
        // before that session ends, the device starts with nothing notified,
        // as after any attach, even if the session is abandoned (found by
        // FuzzSync once it modelled abandoned sessions).
        checkpoint?.notified[sourceID] = nil
        var report = SyncReport()
        space.unmapEverything(report: &report)
        return report
    }

    /// A full sync of one device, or of all: re-reads context entries and walks
    /// every table. Over unchanged tables it issues no ioctl at all.
    public func replay(_ sourceID: SourceID? = nil) throws(BridgeError) -> SyncReport {
        if let sourceID {
            guard let space = spaces[sourceID] else {
                throw BridgeError(.notAttached, "device \(sourceID) is not attached")
            }
            // A restarted daemon before the VMM is back: its adopted
            // mappings have no host address yet and the guest's state is
            // not known, so a sync would unmap what the kernel rightly
            // holds. (A loading VMM's replay syncs, as it always did.)
            guard !(syncSuspended && !space.unresolvedAdopted.isEmpty) else { return SyncReport() }
            return guardingRAM { fullSync(space, report: &$0) }
        }
        return guardingRAM { refreshAll(&$0) }
    }

    // MARK: invalidations

    /// What a batch asks of one address space.
    private struct Pending {
        var refreshContext = false
        var full = false
        var ranges: [(UInt64, UInt64)] = []
    }

    /// The batch being processed, by device: kept between batches (emptied,
    /// its storage kept) so that a request does not allocate a dictionary.
    private var pending: [SourceID: Pending] = [:]

    /// Executes a batch of raw 128-bit descriptors, as the guest wrote them.
    ///
    /// Invalidations are merged over the whole batch and each address space
    /// is synced once, at its end (or where a descriptor is refused), however
    /// many pages and waits it names. The waits are completion points only
    /// the reply makes visible: the VMM completes them when it has the
    /// result, after every sync of the batch, so syncing at each wait instead
    /// would show the guest nothing more. It would only cost more: a frame of
    /// 32,767 (global invalidation, wait) pairs made as many full walks, each
    /// up to the walk budget (found by the FuzzSync fuzzer; ~40 min of one
    /// core against self-aliasing tables).
    public func process(_ descriptors: [(low: UInt64, high: UInt64)]) -> BatchResult {
        process(descriptors) { $0 }
    }

    /// `process` of descriptors in the caller's own representation, read
    /// through `words`: the daemon passes the decoded frame's list as it is
    /// instead of copying it into an array of tuples per request (issue 14).
    ///
    /// Inlined into the caller, so the caller's concrete collection is
    /// walked by index: an unspecialized generic loop here cost the runtime's
    /// metadata lookups on every request (issue 14: 4.5K of 41K instructions
    /// per one-page INVALIDATE).
    @inlinable
    public func process<Descriptors: RandomAccessCollection>(
        _ descriptors: Descriptors, words: (Descriptors.Element) -> (low: UInt64, high: UInt64)
    ) -> BatchResult where Descriptors.Index == Int {
        let base = descriptors.startIndex
        return process(count: descriptors.count) { words(descriptors[base + $0]) }
    }

    /// `process` of `count` descriptors, the `index`th read by `word(index)`.
    public func process(count: Int, word: (Int) -> (low: UInt64, high: UInt64)) -> BatchResult {
        var result = BatchResult()
        pending.removeAll(keepingCapacity: true)
        for index in 0..<count {
            let raw = word(index)
            switch InvalidationDescriptor.decode(low: raw.low, high: raw.high, caps: caps) {
            case let .failure(error):
                logger.warning("invalid invalidation descriptor", metadata: ["index": "\(index)", "error": "\(error)"])
                result.rejected = .init(index: index, reason: "descriptor \(index): \(error.description)")
            case let .success(descriptor):
                if case .wait = descriptor {
                    result.waits += 1
                } else {
                    collect(descriptor)
                }
            }
            if result.rejected != nil { break }
        }
        result.report = guardingRAM { execute(into: &$0) }
        return result
    }

    /// Applies notifier events (notifier mode). Events for devices that are
    /// not attached are ignored: they belong to emulated devices. An event
    /// that is refused stops the batch, as a refused descriptor does.
    ///
    /// While translation is disabled nothing is recorded: with GCMD.TE
    /// clear there is no guest translation for an event to describe (QEMU
    /// fires its IOMMU notifiers only while the guest translates), and
    /// nothing may be mapped. The daemon refuses such a NOTIFY before it
    /// gets here; this keeps the rule where the state lives.
    public func notify(_ events: [NotifierEvent]) -> BatchResult {
        var result = BatchResult()
        guard translationEnabled else { return result }
        var ranges: [SourceID: [(UInt64, UInt64)]] = [:]
        for (index, event) in events.enumerated() {
            // A device fed by its vfio-user client takes no notifier events
            // either: its client walks the guest's tables for it.
            guard let space = spaces[event.sourceID], !space.isClientFed else { continue }
            switch space.recordNotification(event) {
            case let .success(range):
                ranges[event.sourceID, default: []].append(range)
            case let .failure(refusal):
                result.rejected = .init(index: index, reason: "entry \(index) (\(event.sourceID)): \(refusal.reason)")
            }
            if result.rejected != nil { break }
        }
        guard !syncSuspended else { return result }
        if ranges.count == 1, let (sid, only) = ranges.first, only.count == 1 {
            // One entry for one device (a VMM notifying each mapping as it
            // happens): nothing to sort or merge.
            if let space = spaces[sid] {
                space.syncs += 1
                space.syncNotified(start: only[0].0, end: only[0].1, memory: memory, report: &result.report)
            }
            return result
        }
        for sid in ranges.keys.sorted() {
            guard let space = spaces[sid] else { continue }
            space.syncs += 1
            for (lo, hi) in Self.coalesce(ranges[sid]!) {
                space.syncNotified(start: lo, end: hi, memory: memory, report: &result.report)
            }
        }
        return result
    }

    static func coalesce(_ ranges: [(UInt64, UInt64)]) -> [(UInt64, UInt64)] {
        var merged: [(UInt64, UInt64)] = []
        for r in ranges.sorted(by: { $0.0 < $1.0 }) {
            if let last = merged.last, r.0 <= last.1 {
                merged[merged.count - 1].1 = max(last.1, r.1)
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    /// Executes already-decoded descriptors (same rules as `process`).
    public func process(_ descriptors: [InvalidationDescriptor]) -> BatchResult {
        process(descriptors.map { $0.encoded })
    }

    private func collect(_ descriptor: InvalidationDescriptor) {
        switch descriptor {
        case let .contextCache(scope):
            for (sid, space) in spaces where !space.isClientFed {
                let hit: Bool
                switch scope {
                case .global:
                    hit = true
                case let .domain(did):
                    // In caching mode, not-present entries are cached under DID 0 (spec 6.1).
                    hit = space.context.domainID == did || (did == 0 && space.context.domainID == nil)
                case let .device(_, target, functionMask):
                    // FM masks the low function-number bits of the source-id (spec table 18).
                    let mask: UInt16 = ~UInt16((1 << functionMask) - 1)
                    hit = sid.rawValue & mask == target.rawValue & mask
                }
                if hit {
                    pending[sid, default: Pending()].refreshContext = true
                    pending[sid, default: Pending()].full = true
                }
            }
        case let .iotlb(scope, _, _):
            // A vfio-user client's device: its client invalidates for it.
            for (sid, space) in spaces where !space.isClientFed {
                switch scope {
                case .global:
                    pending[sid, default: Pending()].full = true
                case let .domain(did):
                    if space.context.domainID == did { pending[sid, default: Pending()].full = true }
                case let .pages(did, address, mask, _):
                    guard space.context.domainID == did else { continue }
                    pending[sid, default: Pending()].ranges.append(InvalidationDescriptor.pageRange(address: address, addressMask: mask))
                }
            }
        case .deviceTLB, .interruptEntryCache, .wait:
            // No state of ours: the host IOMMU's own caches are the kernel's job.
            break
        }
    }

    private func execute(into report: inout SyncReport) {
        guard !pending.isEmpty else { return }
        if pending.count == 1, let (sid, work) = pending.first {
            // The common batch (one device): no key list to sort.
            execute(work, for: sid, into: &report)
        } else {
            for sid in pending.keys.sorted() {
                guard let work = pending[sid] else { continue }
                execute(work, for: sid, into: &report)
            }
        }
        pending.removeAll(keepingCapacity: true)
    }

    private func execute(_ work: Pending, for sid: SourceID, into report: inout SyncReport) {
        guard let space = spaces[sid] else { return }
        space.syncs += 1
        if work.refreshContext {
            fullSync(space, report: &report, counted: false)
        } else if work.full {
            space.syncAll(walker: activeWalker, report: &report)
        } else if work.ranges.count == 1 {
            // One page-selective range (a batch-1 stream): nothing to merge.
            space.sync(start: work.ranges[0].0, end: work.ranges[0].1, walker: activeWalker, report: &report)
        } else {
            // Coalesce the batch's ranges so each part of the space is walked once.
            for (lo, hi) in Self.coalesce(work.ranges) { space.sync(start: lo, end: hi, walker: activeWalker, report: &report) }
        }
    }
}
