import Glibc
import JSON
import VTd
import VTdBridgeClient

/// The scenarios of issue 11's qtest run. Each starts from a guest whose
/// device is attached to domain 1 with translation on, maps what it needs
/// itself, and leaves translation on. IOVAs stay below 256 MiB (edu's
/// 28-bit DMA mask); guest pages come from `QEMUGuest.Layout`.
extension QEMUTestRunner {
    static let sourceIOVA: UInt64 = 0x0010_0000
    static let targetIOVA: UInt64 = 0x0010_1000
    static let largeIOVA: UInt64 = 0x0060_0000
    static let spreadIOVA: UInt64 = 0x0080_0000
    /// Bytes per DMA: half the edu buffer. QEMU 7.2's edu refuses (with a
    /// hardware error that aborts QEMU) a transfer that ends exactly at the
    /// buffer's end, so a whole-buffer transfer is never used.
    static let transfer = 2048

    var layout: QEMUGuest.Layout { guest.layout }

    /// Loads `bytes` into the edu buffer: written into RAM at `gpa`, then
    /// DMA'd from `iova` (which must map `gpa`).
    func loadBuffer(_ bytes: [UInt8], via iova: UInt64, at gpa: UInt64) throws {
        try guest.write(gpa, bytes)
        let took = try guest.edu.fromRAM(iova: iova, count: UInt64(bytes.count))
        transcript.guest("edu DMA RAM → buffer: \(bytes.count) bytes from IOVA \(hex(iova)) (\(QTestLatencyLog.milliseconds(took)))")
    }

    /// edu buffer → RAM at `iova`.
    func storeBuffer(to iova: UInt64, count: Int = transfer) throws {
        let took = try guest.edu.toRAM(iova: iova, count: UInt64(count))
        transcript.guest("edu DMA buffer → RAM: \(count) bytes to IOVA \(hex(iova)) (\(QTestLatencyLog.milliseconds(took)))")
    }

    func mapLogged(_ iova: UInt64, _ gpa: UInt64, sizeShift: Int = 12) throws {
        let latency = try guest.map(iova: iova, gpa: gpa, sizeShift: sizeShift)
        transcript.guest("map IOVA \(hex(iova)) → GPA \(hex(gpa)) (\(sizeShift == 21 ? "2 MiB" : "4 KiB") leaf); page-selective invalidation, IQT write \(QTestLatencyLog.milliseconds(latency))")
    }

    // MARK: map and DMA both ways

    func mapAndDMA() throws {
        let (source, target) = (layout.dataPage(0), layout.dataPage(1))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        try daemonCheck(after: "two 4 KiB maps")
        // The identity page: where the DMA would land if nothing translated.
        let identityMarker = QEMUGuest.pattern(201)
        try guest.write(Self.targetIOVA, identityMarker)
        try guest.write(target, [UInt8](repeating: 0, count: Self.transfer))
        let bytes = QEMUGuest.pattern(1)
        try loadBuffer(bytes, via: Self.sourceIOVA, at: source)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, bytes, "the round trip RAM → edu → RAM")
        passed("RAM → edu → RAM: the \(Self.transfer) bytes at GPA \(hex(source)) (IOVA \(hex(Self.sourceIOVA))) arrived at GPA \(hex(target)), the page IOVA \(hex(Self.targetIOVA)) names")
        try expectBytes(at: Self.targetIOVA, identityMarker, "GPA equal to the IOVA")
        passed("GPA \(hex(Self.targetIOVA)) (the IOVA taken as an address) is untouched: the DMA was translated")
    }

    // MARK: unmap, then DMA to that IOVA faults

    /// The page is used before it is unmapped, so that an IOMMU that caches
    /// translations holds it: only the invalidation can make the DMA fault.
    func unmapFaults() throws {
        let (source, target) = (layout.dataPage(0), layout.dataPage(1))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        let bytes = QEMUGuest.pattern(2)
        try guest.write(target, [UInt8](repeating: 0, count: Self.transfer))
        try loadBuffer(bytes, via: Self.sourceIOVA, at: source)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, bytes, "the mapped page before the unmap")
        passed("IOVA \(hex(Self.targetIOVA)) maps GPA \(hex(target)) and has been used")

        let latency = try guest.unmap(iova: Self.targetIOVA)
        transcript.guest("unmap IOVA \(hex(Self.targetIOVA)); page-selective invalidation, IQT write \(QTestLatencyLog.milliseconds(latency))")
        try daemonCheck(after: "unmapping one page")
        let marker = QEMUGuest.pattern(202)
        try guest.write(target, marker)
        try witness.arm(guest)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, marker, "the page the cleared PTE named")
        passed("DMA to the unmapped IOVA \(hex(Self.targetIOVA)) left GPA \(hex(target)) untouched")
        report(try witness.expectFault(guest, iova: Self.targetIOVA, write: true), "fault")

        // The invalidation was for one page: its neighbour still maps.
        try guest.write(source, [UInt8](repeating: 0, count: Self.transfer))
        try storeBuffer(to: Self.sourceIOVA)
        try expectBytes(at: source, bytes, "the neighbouring page")
        passed("the neighbouring IOVA \(hex(Self.sourceIOVA)) still maps GPA \(hex(source)): the invalidation was page-selective")
    }

    // MARK: remap

    /// A PTE in use is pointed at another page; DMA must follow it at once.
    func remap() throws {
        let (old, new, loader) = (layout.dataPage(0), layout.dataPage(2), layout.dataPage(3))
        try mapLogged(Self.sourceIOVA, old)
        try mapLogged(Self.targetIOVA, loader)
        let first = QEMUGuest.pattern(3)
        try guest.write(old, [UInt8](repeating: 0, count: Self.transfer))
        try loadBuffer(first, via: Self.targetIOVA, at: loader)
        try storeBuffer(to: Self.sourceIOVA)
        try expectBytes(at: old, first, "the first target of IOVA \(hex(Self.sourceIOVA))")

        try mapLogged(Self.sourceIOVA, new)
        transcript.guest("(the PTE for IOVA \(hex(Self.sourceIOVA)) was retargeted from GPA \(hex(old)) to \(hex(new)))")
        try daemonCheck(after: "retargeting a PTE")
        let second = QEMUGuest.pattern(13)
        try loadBuffer(second, via: Self.targetIOVA, at: loader)
        try guest.write(new, [UInt8](repeating: 0, count: Self.transfer))
        try storeBuffer(to: Self.sourceIOVA)
        try expectBytes(at: new, second, "the new target of the retargeted PTE")
        try expectBytes(at: old, first, "the old target of the retargeted PTE")
        passed("DMA to IOVA \(hex(Self.sourceIOVA)) landed in GPA \(hex(old)) before the retarget and in \(hex(new)) after it; the old page kept its bytes")
    }

    // MARK: a 2 MiB leaf

    func largePage() throws {
        guard guest.caps.supports2MPages else {
            throw SimError("CAP.SLLPS (\(hex((guest.caps.cap >> 34) & 0xf))) offers no 2 MiB second-level leaves")
        }
        let region = layout.largeRegion(0)
        try mapLogged(Self.largeIOVA, region, sizeShift: 21)
        try daemonCheck(after: "a 2 MiB map")
        for (i, offset) in [UInt64(0), 0x10_0000, 0x1f_f000].enumerated() {
            let bytes = QEMUGuest.pattern(UInt8(10 + i))
            let back = (offset + 0x8000) % 0x20_0000
            try guest.write(region + back, [UInt8](repeating: 0, count: Self.transfer))
            try loadBuffer(bytes, via: Self.largeIOVA + offset, at: region + offset)
            try storeBuffer(to: Self.largeIOVA + back)
            try expectBytes(at: region + back, bytes, "offset \(hex(back)) of the 2 MiB leaf")
        }
        passed("DMA both ways at offsets 0, 1 MiB and 2 MiB − 4 KiB of the 2 MiB leaf hit GPA \(hex(region)) + offset")
    }

    // MARK: a domain invalidation after clearing an upper level

    func domainInvalidation() throws {
        let pages = (0..<4 as Range<UInt64>).map { layout.dataPage(10 + $0) }
        for (i, gpa) in pages.enumerated() { try mapLogged(Self.spreadIOVA + UInt64(i) * 0x1000, gpa) }
        try mapLogged(Self.largeIOVA, layout.largeRegion(0), sizeShift: 21)
        // Use every IOVA checked below, so a caching IOMMU holds them all.
        let bytes = QEMUGuest.pattern(5)
        try loadBuffer(bytes, via: Self.spreadIOVA, at: pages[0])
        let used = [(Self.spreadIOVA + 0x1000, pages[1]), (Self.spreadIOVA + 0x3000, pages[3]), (Self.largeIOVA, layout.largeRegion(0))]
        for (iova, gpa) in used {
            try guest.write(gpa, [UInt8](repeating: 0, count: Self.transfer))
            try storeBuffer(to: iova)
            try expectBytes(at: gpa, bytes, "IOVA \(hex(iova)) before the clear")
        }
        passed("the 4 KiB maps and the 2 MiB map are in use before the clear")

        let before = guest.mappings.count
        let (range, latency) = try guest.clearTopLevel(covering: Self.spreadIOVA)
        transcript.guest("cleared the level-3 entry for IOVA \(hex(range.lowerBound))–\(hex(range.upperBound - 1)) (\(before) leaves under it); domain-selective invalidation, IQT write \(QTestLatencyLog.milliseconds(latency))")
        try check(guest.mappings.isEmpty, "the model still holds \(guest.mappings.count) mapping(s) under the cleared entry")
        try daemonCheck(after: "clearing a level-3 entry and a domain invalidation")

        for (iova, gpa) in used {
            let marker = QEMUGuest.pattern(UInt8(truncatingIfNeeded: 210 &+ iova >> 12))
            try guest.write(gpa, marker)
            try witness.arm(guest)
            try storeBuffer(to: iova)
            try expectBytes(at: gpa, marker, "a page under the cleared entry")
            passed("DMA to IOVA \(hex(iova)) left GPA \(hex(gpa)) untouched")
            report(try witness.expectFault(guest, iova: iova, write: true), "fault")
        }
    }

    // MARK: translation off and on

    func translationOffOn() throws {
        let (source, target) = (layout.dataPage(20), layout.dataPage(21))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        let first = QEMUGuest.pattern(6)
        try loadBuffer(first, via: Self.sourceIOVA, at: source)
        try guest.write(target, [UInt8](repeating: 0, count: Self.transfer))
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, first, "the round trip with translation on")

        let off = try guest.setTranslation(false)
        transcript.guest("translation off (GCMD write \(QTestLatencyLog.milliseconds(off)); GSTS \(hex(try guest.dmar.status())))")
        try daemonCheck(after: "translation off")
        // Untranslated, an address is a GPA: the device reaches all of RAM.
        let (plainSource, plainTarget) = (layout.dataPage(22), layout.dataPage(23))
        let second = QEMUGuest.pattern(7)
        try guest.write(plainTarget, [UInt8](repeating: 0, count: Self.transfer))
        try loadBuffer(second, via: plainSource, at: plainSource)
        try storeBuffer(to: plainTarget)
        try expectBytes(at: plainTarget, second, "untranslated DMA")
        passed("with translation off, DMA to address \(hex(plainTarget)) went to that GPA")

        let on = try guest.setTranslation(true)
        transcript.guest("global invalidations; translation on (GCMD write \(QTestLatencyLog.milliseconds(on)); GSTS \(hex(try guest.dmar.status())))")
        try daemonCheck(after: "translation back on")
        let identityMarker = QEMUGuest.pattern(207)
        try guest.write(Self.targetIOVA, identityMarker)
        try guest.write(target, [UInt8](repeating: 0, count: Self.transfer))
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, second, "DMA through the tables after translation came back")
        try expectBytes(at: Self.targetIOVA, identityMarker, "GPA equal to the IOVA")
        passed("translation is back: DMA to IOVA \(hex(Self.targetIOVA)) went to GPA \(hex(target)) again, not to GPA \(hex(Self.targetIOVA))")
    }

    // MARK: platform reset

    func platformReset() throws {
        try mapLogged(Self.sourceIOVA, layout.dataPage(30))
        try guest.platformReset()
        transcript.guest("platform reset (port 0xcf9 ← 0x06); GSTS is 0: translation and queued invalidation are off")
        let (command, bar) = try guest.edu.configState()
        try check(command & (QEMUGuestPCI.memorySpace | QEMUGuestPCI.busMaster) == 0 && bar == 0,
                  "after the reset the edu's command register is \(hex(command)) and BAR0 \(hex(bar)), expected both cleared")
        passed("the reset cleared the edu's command register and BAR0 and the DMAR unit's state")
        try daemonCheck(after: "a platform reset")

        try guest.bringUp(transcript)
        let (source, target) = (layout.dataPage(31), layout.dataPage(32))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        try daemonCheck(after: "bring-up and two maps after the reset")
        let bytes = QEMUGuest.pattern(8)
        try guest.write(target, [UInt8](repeating: 0, count: Self.transfer))
        try loadBuffer(bytes, via: Self.sourceIOVA, at: source)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, bytes, "the round trip after the reset")
        passed("after the reset the guest brought the IOMMU up again and DMA works both ways")
    }

    // MARK: the cost of one page-selective invalidation

    /// Maps and unmaps one page `rounds` times, each with its page-selective
    /// invalidation, for the latency figures; then checks the last map works.
    func invalidationCost() throws {
        let rounds = 100
        let iova = Self.spreadIOVA + 0x10_0000
        let gpa = layout.dataPage(40)
        var samples: [Duration] = []
        for _ in 0..<rounds {
            samples.append(try guest.map(iova: iova, gpa: gpa))
            samples.append(try guest.unmap(iova: iova))
        }
        try guest.map(iova: iova, gpa: gpa)
        try mapLogged(Self.sourceIOVA, layout.dataPage(41))
        let sorted = samples.sorted()
        transcript.guest("\(rounds) maps and \(rounds) unmaps of one page: IQT write p50 \(QTestLatencyLog.milliseconds(sorted[sorted.count / 2])), max \(QTestLatencyLog.milliseconds(sorted.last!))")
        try daemonCheck(after: "\(rounds) map/unmap rounds")
        let bytes = QEMUGuest.pattern(9)
        try guest.write(gpa, [UInt8](repeating: 0, count: Self.transfer))
        try loadBuffer(bytes, via: Self.sourceIOVA, at: layout.dataPage(41))
        try storeBuffer(to: iova)
        try expectBytes(at: gpa, bytes, "the page after the map/unmap rounds")
        passed("after \(2 * rounds) invalidations the last map is the one in force")
    }

    // MARK: QEMU killed, a new one started

    func qemuRestart() throws {
        let before = guest.view
        let oldPID = process?.pid ?? 0
        let status = killQEMU()
        try check(status.map { $0 & 0x7f == SIGKILL } ?? false, "QEMU pid \(oldPID) did not die of SIGKILL (status \(status.map { String($0) } ?? "none"))")
        transcript.line("runner", "SIGKILL QEMU pid \(oldPID): \(QEMUProcess.describe(status!))")
        report(try daemon.qemuGone(before), "daemon after QEMU died")

        try startQEMU()
        report(try daemon.qemuBack(guest.view), "daemon after a new QEMU connected")
        let (source, target) = (layout.dataPage(50), layout.dataPage(51))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        try daemonCheck(after: "two maps in the new QEMU")
        let bytes = QEMUGuest.pattern(4)
        try loadBuffer(bytes, via: Self.sourceIOVA, at: source)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, bytes, "the round trip in the new QEMU")
        passed("a new QEMU (pid \(process?.pid ?? 0)) runs the guest from scratch and DMA works both ways")
    }

    // MARK: the daemon restarted under a running QEMU (systemd hand-over)

    /// `systemctl restart` of the daemon while QEMU is connected: the
    /// session is handed over, so QEMU's connection, its DMA regions, its
    /// BAR mapping and the device go on. DMA through the regions mapped
    /// before works during and after; a map after it goes to the new process
    /// over the same connection.
    func daemonRestart() throws {
        guard let unit else { throw SimError("daemon-restart needs --unit") }
        let (source, target) = (layout.dataPage(60), layout.dataPage(61))
        try mapLogged(Self.sourceIOVA, source)
        try mapLogged(Self.targetIOVA, target)
        try daemonCheck(after: "two maps before the restart")
        let qemuPID = process?.pid ?? 0
        let control = { () throws -> JSONValue in try ControlClient(path: unit.controlSocket).require("status") }
        let oldPID = try control()["pid"]?.intValue ?? 0
        try unit.perform(.restart)
        transcript.line("runner", "systemctl restart vtdbridged@\(unit.name) (pid \(oldPID)) while QEMU pid \(qemuPID) is connected")
        var status: JSONValue?
        for _ in 0..<300 {
            if let s = try? control(), let pid = s["pid"]?.intValue, pid != oldPID { status = s; break }
            usleep(20_000)
        }
        guard let status else { throw SimError("vtdbridged@\(unit.name) did not come back within 6 s") }
        let device = status["devices"]?.arrayValue?.first?["vfio-user"]
        try check(device?["connected"]?.boolValue == true,
                  "after the restart the daemon has no vfio-user client: \(device?.serialized ?? "no device")")
        passed("the daemon restarted (pid \(oldPID) → \(status["pid"]?.intValue ?? 0)) and resumed QEMU's session: \(status["restart"]?.serialized ?? "")")
        let bytes = QEMUGuest.pattern(7)
        try loadBuffer(bytes, via: Self.sourceIOVA, at: source)
        try storeBuffer(to: Self.targetIOVA)
        try expectBytes(at: target, bytes, "the round trip after the restart, through the regions mapped before")
        passed("RAM → edu → RAM through the regions mapped before the restart: QEMU (pid \(qemuPID)) never noticed")
        let (s2, t2) = (layout.dataPage(62), layout.dataPage(63))
        try mapLogged(Self.spreadIOVA, s2)
        try mapLogged(Self.spreadIOVA + 0x1000, t2)
        try daemonCheck(after: "two maps after the restart, over the same connection")
        let more = QEMUGuest.pattern(9)
        try loadBuffer(more, via: Self.spreadIOVA, at: s2)
        try storeBuffer(to: Self.spreadIOVA + 0x1000)
        try expectBytes(at: t2, more, "the round trip through regions mapped after the restart")
        try check(process?.pid == qemuPID, "QEMU changed: pid \(process?.pid ?? 0), was \(qemuPID)")
        passed("regions QEMU mapped after the restart went to the new process over the same connection, and DMA works through them")
    }
}
