import Glibc
import VTd
import VTdGuest

/// The guest operating system of a qtest run, with no CPU of its own: it
/// does over qtest what a kernel's PCI code and intel-iommu driver do with
/// loads and stores. It enumerates the edu at 00:03.0, brings up QEMU's
/// DMA-remapping unit (root table, queued invalidation, translation), gives
/// the device a 3-level domain, and maps and unmaps pages in it with the
/// invalidations Linux issues in caching mode. The tables are written by
/// VTdGuest's GuestTableWriter, the same writer the simulator uses, into a
/// local copy that is flushed into QEMU's RAM before each invalidation.
///
/// It also keeps the model of what it mapped (`mappings`), which checks are
/// made against — not another walk of the same tables.
final class QEMUGuest {
    /// Where things live in guest RAM (at least 128 MiB) and MMIO space.
    struct Layout {
        var ramSize: UInt64
        /// Data pages: 4096 of them from 16 MiB.
        func dataPage(_ i: UInt64) -> UInt64 {
            precondition(i < 4096)
            return 0x0100_0000 + i * 0x1000
        }
        /// 2 MiB-aligned regions for large leaves: eight from 32 MiB.
        func largeRegion(_ i: UInt64) -> UInt64 {
            precondition(i < 8)
            return 0x0200_0000 + i * 0x20_0000
        }
        var queue: UInt64 = 0x0300_0000
        var waitStatus: UInt64 = 0x0300_1000
        var tableArea: Range<UInt64> = 0x0400_0000..<0x0420_0000
        /// BAR0 of the edu (1 MiB), inside q35's 32-bit PCI hole.
        var bar0: UInt64 = 0xfe00_0000
        static let minimumRAM: UInt64 = 128 << 20
    }

    let qtest: QTestClient
    let layout: Layout
    let dmar: QEMUGuestDMAR
    let latencies: QTestLatencyLog
    let device = SourceID("00:03.0")!
    let domain: UInt16 = 1
    /// aw-bits=39: SAGAW offers 3-level tables only (spec 3.6).
    let levels = 3
    private let tick: () throws -> Void
    private let tables: QEMUGuestTableMemory
    private(set) var caps = IOMMUCapabilities(cap: 0, ecap: 0)
    private(set) var edu: QEMUGuestEdu!
    private(set) var writer: GuestTableWriter<QEMUGuestTableMemory>!
    private(set) var queue: QEMUGuestInvalidationQueue!
    private(set) var mappings: [UInt64: GuestMapping] = [:]
    private(set) var translating = false

    init(qtest: QTestClient, layout: Layout, latencies: QTestLatencyLog, tick: @escaping () throws -> Void) {
        self.qtest = qtest
        self.layout = layout
        self.latencies = latencies
        self.tick = tick
        dmar = QEMUGuestDMAR(qtest: qtest, base: QEMUGuestDMAR.defaultBase)
        tables = QEMUGuestTableMemory(area: layout.tableArea)
    }

    var view: QEMUGuestView {
        QEMUGuestView(device: device, translationEnabled: translating,
                      mappings: mappings.keys.sorted().map { mappings[$0]! }, ramSize: layout.ramSize)
    }

    // MARK: bring-up

    /// From power-on (or a platform reset) to a device whose DMA goes
    /// through an empty domain, in the order Linux's intel-iommu takes:
    /// queued invalidation, root table, global context-cache and IOTLB
    /// invalidations, translation on; then the device's context entry with
    /// the caching-mode invalidations that make it present.
    func bringUp(_ transcript: Transcript) throws {
        mappings = [:]
        translating = false
        edu = try QEMUGuestEdu.enumerate(qtest, bar0: layout.bar0, tick: tick)
        transcript.guest("00:03.0 is edu (1234:11e8); BAR0 at \(hex(layout.bar0)), memory and bus master on")

        caps = try dmar.capabilities()
        transcript.guest("DMAR unit at \(hex(dmar.base)): version \(try dmar.versionText()), CAP \(hex(caps.cap)), ECAP \(hex(caps.ecap))")
        guard caps.cachingMode else {
            throw SimError("CAP.CM is clear: QEMU's intel-iommu needs caching-mode=on, or the guest maps pages without invalidating (and nothing outside the guest learns of them)")
        }
        guard caps.supportedLevels.contains(levels) else {
            throw SimError("CAP.SAGAW offers \(caps.supportedLevels.sorted()) levels, not 3: is intel-iommu's aw-bits 39?")
        }
        guard caps.queuedInvalidation, caps.pageSelectiveInvalidation else {
            throw SimError("the DMAR unit lacks queued invalidation (ECAP.QI) or page-selective invalidation (CAP.PSI)")
        }
        guard try dmar.status() == 0 else { throw SimError("GSTS is \(hex(try dmar.status())) at bring-up, expected 0 after reset") }

        queue = QEMUGuestInvalidationQueue(qtest: qtest, dmar: dmar, queue: layout.queue, statusAddress: layout.waitStatus, latencies: latencies)
        try queue.enable()
        writer = try GuestTableWriter(memory: tables, caps: caps, tableArea: layout.tableArea)
        try tables.flush(qtest)
        try dmar.setRootTable(writer.rootTable)
        transcript.guest("queued invalidation on (queue at \(hex(layout.queue))); root table at \(hex(writer.rootTable))")
        try queue.submit([.contextCache(.global), .iotlb(.global, drainReads: false, drainWrites: false)], what: "global invalidation (IQT write)")
        latencies.record("translation enable (GCMD write)", try dmar.setTranslation(true))
        translating = true
        transcript.guest("global context-cache and IOTLB invalidation; translation on (GSTS \(hex(try dmar.status())))")

        let attach = try writer.attach(device, domain: domain, levels: levels)
        try tables.flush(qtest)
        try queue.submit(attach, what: "context-cache and domain invalidation (IQT write)")
        transcript.guest("context entry: \(device) → domain \(domain), \(levels)-level tables; device-selective context-cache and domain IOTLB invalidation")
    }

    // MARK: mapping

    /// Maps [iova, iova + 2^sizeShift) to `gpa` and issues the invalidation
    /// (page-selective). Returns the IQT store's latency.
    @discardableResult
    func map(iova: UInt64, gpa: UInt64, sizeShift: Int = 12, permission: DMAPermission = .readWrite) throws -> Duration {
        if sizeShift == 21 && !caps.supports2MPages { throw SimError("CAP.SLLPS offers no 2 MiB leaves") }
        let size = UInt64(1) << UInt64(sizeShift)
        // A leaf replaces what it covers, in the model as in the tables.
        mappings = mappings.filter { !($0.key < iova + size && iova < $0.key + $0.value.size) }
        mappings[iova] = GuestMapping(iova: iova, gpa: gpa, size: size, permission: permission)
        let descriptors = try writer.map(domain: domain, iova: iova, gpa: gpa, sizeShift: sizeShift, permission: permission)
        try tables.flush(qtest)
        return try queue.submit(descriptors, what: Self.label(descriptors))
    }

    /// Clears the leaf at `iova` and issues the page-selective invalidation.
    @discardableResult
    func unmap(iova: UInt64, sizeShift: Int = 12) throws -> Duration {
        mappings[iova] = nil
        let descriptors = try writer.unmap(domain: domain, iova: iova, sizeShift: sizeShift)
        guard !descriptors.isEmpty else { throw SimError("no table maps \(hex(iova)); nothing to unmap") }
        try tables.flush(qtest)
        return try queue.submit(descriptors, what: Self.label(descriptors))
    }

    /// Clears the top-level (level-3) entry covering `iova` — the whole
    /// 1 GiB under it, every leaf below — and issues a domain-selective
    /// IOTLB invalidation, as a guest tearing down a large range does.
    @discardableResult
    func clearTopLevel(covering iova: UInt64) throws -> (range: Range<UInt64>, latency: Duration) {
        let span = UInt64(1) << vtdLevelShift(levels)
        let start = iova & ~(span - 1)
        mappings = mappings.filter { !($0.key >= start && $0.key < start + span) }
        try writer.storeEntry(domain: domain, iova: iova, level: levels, raw: 0)
        try tables.flush(qtest)
        let latency = try queue.submit([.iotlb(.domain(domain), drainReads: false, drainWrites: false)],
                                       what: "domain-selective IOTLB invalidation (IQT write)")
        return (start..<start + span, latency)
    }

    /// Translation off, or back on. Back on, the guest first invalidates
    /// globally, as after setting a root table: the unit may hold nothing
    /// from before. Returns the GCMD store's latency.
    @discardableResult
    func setTranslation(_ on: Bool) throws -> Duration {
        if on {
            try queue.submit([.contextCache(.global), .iotlb(.global, drainReads: false, drainWrites: false)], what: "global invalidation (IQT write)")
        }
        let latency = try dmar.setTranslation(on)
        latencies.record(on ? "translation enable (GCMD write)" : "translation disable (GCMD write)", latency)
        translating = on
        return latency
    }

    /// A platform reset through the reset control register (port 0xcf9,
    /// bits SYS_RST and RST_CPU: a hard reset of the machine, devices
    /// included). QEMU performs it after the store; the DMAR unit's GSTS
    /// going to 0 shows it happened. Everything the guest set up is gone.
    func platformReset() throws {
        try qtest.outb(0xcf9, 0x06)
        let deadline = ContinuousClock.now + .seconds(5)
        while try dmar.status() != 0 {
            guard ContinuousClock.now < deadline else { throw SimError("GSTS still \(hex(try dmar.status())) 5 s after the reset") }
            usleep(1000)
        }
        mappings = [:]
        translating = false
    }

    static func label(_ descriptors: [InvalidationDescriptor]) -> String {
        switch descriptors.first {
        case .iotlb(.pages, _, _)?: "page-selective IOTLB invalidation (IQT write)"
        case .iotlb(.domain, _, _)?: "domain-selective IOTLB invalidation (IQT write)"
        default: "invalidation (IQT write)"
        }
    }

    // MARK: guest RAM

    func write(_ gpa: UInt64, _ bytes: [UInt8]) throws { try qtest.write(gpa, bytes) }
    func read(_ gpa: UInt64, count: Int) throws -> [UInt8] { try qtest.read(gpa, count: count) }

    /// Bytes no other seed gives, and that is never all one value.
    static func pattern(_ seed: UInt8, count: Int = 2048) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: Int(seed) &* 37 &+ $0 &* 11 &+ ($0 >> 8) &+ 1) }
    }
}
