import Bridge
import Glibc
import Posix
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// Guest RAM whose backing file the VMM shrinks under the daemon
/// (issue: a shrunk memfd killed vtdbridged with SIGBUS). Every path that
/// reads guest tables is driven over a file that was cut short, for each
/// kind of file a VMM sends; the process must live on, the region must be
/// dropped and reported, nothing may be mapped from it, and the recorded
/// kernel state must equal the shadow.
final class ShrunkGuestRAMTests: XCTestCase {
    /// What backs region B, the one that shrinks.
    enum Backing: CaseIterable, CustomStringConvertible {
        case memfd, tmpfsFile, regularFile
        var description: String {
            switch self {
            case .memfd: "memfd"
            case .tmpfsFile: "tmpfs file"
            case .regularFile: "regular file"
            }
        }
    }

    /// The ways a sync reaches the guest's tables.
    enum Path: CaseIterable, CustomStringConvertible {
        case domainInvalidation, globalInvalidation, pageInvalidationThenFullSync, replay, ready
        var description: String {
            switch self {
            case .domainInvalidation: "domain-selective IOTLB invalidation"
            case .globalInvalidation: "global IOTLB invalidation"
            case .pageInvalidationThenFullSync: "page-selective invalidation, then a full sync"
            case .replay: "replay"
            case .ready: "resumed sync (a VMM's READY)"
            }
        }
    }

    static let regionA = (gpa: UInt64(0), size: UInt64(16 << 20))
    static let regionB = (gpa: UInt64(0x4000_0000), size: UInt64(16 << 20))
    let sid = SourceID("00:03.0")!
    let nearIOVA: UInt64 = 0x1000
    /// Far enough from `nearIOVA` to need its own level-3 table and below.
    let farIOVA: UInt64 = 0x80_0000_0000

    func makeFile(_ backing: Backing, size: UInt64) throws -> FileDescriptor {
        switch backing {
        case .memfd:
            return try FileDescriptor.memoryFile(name: "shrinking-guest-ram", size: size)
        case .tmpfsFile, .regularFile:
            let dir = backing == .tmpfsFile ? "/dev/shm" : NSTemporaryDirectoryPath()
            var template = Array("\(dir)/vtdb-ram-XXXXXX".utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            XCTAssertGreaterThanOrEqual(fd, 0, "mkstemp in \(dir): errno \(errno)")
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            let file = FileDescriptor(adopting: fd, subject: dir)
            try file.truncate(to: size)
            return file
        }
    }

    struct World {
        let bridge: GuestIOMMU
        let backend: RecordingBackend
        let fileB: FileDescriptor
        let memory: GuestRAM
        var writer: GuestTableWriter<GuestRAM>
        /// Offset in file B of the first table page the far mapping needed.
        let farTablesOffset: UInt64
        var hostRangeB: ClosedRange<UInt64> {
            let r = memory.regions.first { $0.gpa == ShrunkGuestRAMTests.regionB.gpa }!
            return r.hostAddress...(r.hostAddress + r.size - 1)
        }
    }

    /// Region A (gpa 0) holds data; region B holds data and, in its top
    /// half, every table. Two pages are mapped: one near IOVA 0 onto A, one
    /// far onto B; the far one's tables are allocated last.
    func makeWorld(_ backing: Backing) throws -> World {
        let fileA = try makeFile(.memfd, size: Self.regionA.size)
        let fileB = try makeFile(backing, size: Self.regionB.size)
        let memory = try GuestRAM([
            GuestRAMRegionSpec(gpa: Self.regionA.gpa, size: Self.regionA.size, backing: .fileDescriptor(fileA, offset: 0)),
            GuestRAMRegionSpec(gpa: Self.regionB.gpa, size: Self.regionB.size, backing: .fileDescriptor(fileB, offset: 0)),
        ])
        let caps = IOMMUCapabilities.make()
        let tableArea = (Self.regionB.gpa + Self.regionB.size / 2)..<(Self.regionB.gpa + Self.regionB.size)
        var writer = try GuestTableWriter(memory: memory, caps: caps, tableArea: tableArea)
        let bridge = try GuestIOMMU(caps: caps, logger: GuestFixture.quietLogger)
        _ = bridge.setMemory(memory)
        _ = bridge.setRootTable(writer.rootTable)
        _ = bridge.setTranslationEnabled(true)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        var batch = try writer.attach(sid, domain: 1)
        batch += try writer.map(domain: 1, iova: nearIOVA, gpa: Self.regionA.gpa + 0x10000)
        batch += try writer.map(domain: 1, iova: farIOVA, gpa: Self.regionB.gpa + 0x2000)
        let result = bridge.process(batch + [GuestTableWriter<GuestRAM>.wait])
        XCTAssertEqual(result.report.maps, 2)
        XCTAssertEqual(backend.mappings.count, 2)
        // The level-3 table of the far IOVA is the first page its map allocated.
        let farL3 = try XCTUnwrap(writer.existingSlot(domain: 1, iova: farIOVA, level: 3)) & ~0xfff
        return World(bridge: bridge, backend: backend, fileB: fileB, memory: memory, writer: writer,
                     farTablesOffset: farL3 - Self.regionB.gpa)
    }

    /// What the recording backend holds, as (iova, size, host) in IOVA order.
    func kernel(_ w: World) -> [(UInt64, UInt64, UInt64)] {
        w.backend.mappings.sorted { $0.key < $1.key }.map { ($0.key, $0.value.size, $0.value.hostAddress) }
    }

    func shadow(_ w: World) -> [(UInt64, UInt64, UInt64)] {
        w.bridge.spaces[sid]!.shadow.entries.map { ($0.iova, $0.size, $0.hostAddress) }
    }

    func check(_ path: Path, _ backing: Backing, file: StaticString = #filePath, line: UInt = #line) throws {
        let w = try makeWorld(backing)
        let lostHost = w.hostRangeB
        // The VMM cuts region B's file just below the far mapping's tables:
        // the near tables stay readable, the far ones are past the end.
        try w.fileB.truncate(to: w.farTablesOffset)
        // The guest maps one more page onto B's surviving half, in a near
        // table: a walk plans this map before it reaches the far tables and
        // faults. Applied, it would pin what the guard put in B's place,
        // memory of the daemon's own, not the guest's.
        var writer = w.writer
        _ = try writer.map(domain: 1, iova: 0x3000, gpa: Self.regionB.gpa + 0x4000)
        w.backend.clearCalls()
        let epoch = GuestRAMGuard.epoch

        var report: SyncReport
        switch path {
        case .domainInvalidation:
            report = w.bridge.process([.iotlb(.domain(1), drainReads: false, drainWrites: false), GuestTableWriter<GuestRAM>.wait]).report
        case .globalInvalidation:
            report = w.bridge.process([.iotlb(.global, drainReads: false, drainWrites: false)]).report
        case .pageInvalidationThenFullSync:
            // The page walk reads only the near tables, which survive.
            let psi = w.bridge.process([w.writer.pageInvalidation(domain: 1, iova: nearIOVA, sizeShift: 12)]).report
            XCTAssertEqual(psi.lostRegions, [], "\(path), \(backing): the near walk read nothing past the end", file: file, line: line)
            XCTAssertEqual(psi.ioctls, 0, file: file, line: line)
            XCTAssertEqual(GuestRAMGuard.epoch, epoch, file: file, line: line)
            report = try w.bridge.replay(sid)
        case .replay:
            report = try w.bridge.replay()
        case .ready:
            w.bridge.suspendSync()
            _ = w.bridge.setRootTable(w.writer.rootTable)
            report = w.bridge.resumeSync()
        }

        let what = "\(path), \(backing)"
        XCTAssertGreaterThan(GuestRAMGuard.epoch, epoch, "\(what): no SIGBUS was absorbed, so the test did not test", file: file, line: line)
        // Told: the report names region B, and every space has the fault.
        XCTAssertEqual(report.lostRegions.map(\.gpa), [Self.regionB.gpa], what, file: file, line: line)
        XCTAssertEqual(report.lostRegions.first?.faultOffset ?? 0 >= w.farTablesOffset, true, what, file: file, line: line)
        let space = w.bridge.spaces[sid]!
        XCTAssertGreaterThanOrEqual(space.faults.counts[.guestRAMLost] ?? 0, 1, what, file: file, line: line)
        // Region B is gone from the table; A stays as it was.
        let memory = try XCTUnwrap(w.bridge.memory)
        XCTAssertEqual(memory.regions.map(\.gpa), [Self.regionA.gpa], what, file: file, line: line)
        XCTAssertEqual(memory.lostRegions.map(\.gpa), [Self.regionB.gpa], what, file: file, line: line)
        XCTAssertEqual(memory.regions[0].hostAddress, w.memory.regions[0].hostAddress, what, file: file, line: line)
        XCTAssertNil(memory.hostAddress(gpa: Self.regionB.gpa + 0x2000, size: 0x1000), what, file: file, line: line)
        // Nothing was mapped from the lost region after it was lost.
        for call in w.backend.calls {
            if case let .map(_, _, host, _) = call {
                XCTAssertFalse(lostHost.contains(host), "\(what): \(call) maps the lost region", file: file, line: line)
            }
        }
        // The root table lived in B: the guest's translation is unreadable
        // now, and, as hardware would on a table it cannot fetch, nothing
        // stays mapped. The kernel holds exactly what the shadow says.
        XCTAssertEqual(kernel(w).map(\.0), shadow(w).map(\.0), what, file: file, line: line)
        XCTAssertEqual(kernel(w).map(\.2), shadow(w).map(\.2), what, file: file, line: line)
        XCTAssertTrue(kernel(w).isEmpty, "\(what): \(kernel(w))", file: file, line: line)
        // And the bridge keeps serving: another batch is answered, nothing lost again.
        let after = w.bridge.process([.iotlb(.global, drainReads: false, drainWrites: false)]).report
        XCTAssertEqual(after.lostRegions, [], what, file: file, line: line)
        XCTAssertEqual(after.ioctls, 0, what, file: file, line: line)
    }

    func testDomainInvalidation() throws { for b in Backing.allCases { try check(.domainInvalidation, b) } }
    func testGlobalInvalidation() throws { for b in Backing.allCases { try check(.globalInvalidation, b) } }
    func testPageInvalidationThenFullSync() throws { for b in Backing.allCases { try check(.pageInvalidationThenFullSync, b) } }
    func testReplay() throws { for b in Backing.allCases { try check(.replay, b) } }
    func testReady() throws { for b in Backing.allCases { try check(.ready, b) } }

    /// The tables stay readable in A while B, holding only data, is lost:
    /// mappings onto A stay untouched (no call), the one onto B goes.
    func testMappingsOntoOtherRegionsStay() throws {
        let fileA = try makeFile(.memfd, size: Self.regionA.size)
        let fileB = try makeFile(.memfd, size: Self.regionB.size)
        let memory = try GuestRAM([
            GuestRAMRegionSpec(gpa: Self.regionA.gpa, size: Self.regionA.size, backing: .fileDescriptor(fileA, offset: 0)),
            GuestRAMRegionSpec(gpa: Self.regionB.gpa, size: Self.regionB.size, backing: .fileDescriptor(fileB, offset: 0)),
        ])
        let caps = IOMMUCapabilities.make()
        var writer = try GuestTableWriter(memory: memory, caps: caps, tableArea: (8 << 20)..<(16 << 20))
        let bridge = try GuestIOMMU(caps: caps, logger: GuestFixture.quietLogger)
        _ = bridge.setMemory(memory)
        _ = bridge.setRootTable(writer.rootTable)
        _ = bridge.setTranslationEnabled(true)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        var batch = try writer.attach(sid, domain: 1)
        batch += try writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        batch += try writer.map(domain: 1, iova: 0x2000, gpa: Self.regionB.gpa + 0x3000)
        XCTAssertEqual(bridge.process(batch).report.maps, 2)
        let keptHost = try XCTUnwrap(backend.mappings[0x1000]?.hostAddress)

        // Something (here: the test itself) reads B past its new end; the
        // guard absorbs it and the next piece of work drops the region.
        try fileB.truncate(to: 0)
        let probe = memory.regions[1].hostAddress
        XCTAssertEqual(UnsafePointer<UInt64>(bitPattern: UInt(probe))!.pointee, 0)
        backend.clearCalls()
        // Nothing in A read zero: a replay of A's tables is still exact,
        // but the epoch moved, so the bridge drops B and syncs again.
        let report = try bridge.replay()
        XCTAssertEqual(report.lostRegions.map(\.gpa), [Self.regionB.gpa])
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x2000, size: 0x1000)])
        XCTAssertEqual(backend.mappings[0x1000]?.hostAddress, keptHost)
        XCTAssertEqual(backend.mappings.count, 1)
        XCTAssertEqual(bridge.spaces[sid]!.faults.counts[.leafOutsideRAM], 1)
        XCTAssertTrue(bridge.spaces[sid]!.faults.recent.contains { $0.reason == .guestRAMLost })
    }

    /// A lost mapping reads zeros: a new table naming the same file again
    /// (grown back to its size) must map it afresh, not reuse the zeros.
    func testLostMappingIsNeverReused() throws {
        let fd = try FileDescriptor.memoryFile(name: "regrown", size: 1 << 20)
        let spec = [GuestRAMRegionSpec(gpa: 0, size: 1 << 20, backing: .fileDescriptor(fd, offset: 0))]
        let first = try GuestRAM(spec)
        try fd.truncate(to: 0)
        XCTAssertEqual(UnsafePointer<UInt64>(bitPattern: UInt(first.regions[0].hostAddress))!.pointee, 0)
        XCTAssertEqual(first.regionsLost, [0])
        try fd.truncate(to: 1 << 20)
        let word: UInt64 = 0x1234_5678_9abc_def0
        XCTAssertEqual(try withUnsafeBytes(of: word) { try fd.write(at: 0, from: $0) }, 8)
        let second = try GuestRAM(spec, reusing: first)
        XCTAssertNotEqual(second.regions[0].hostAddress, first.regions[0].hostAddress)
        XCTAssertEqual(second.word(at: 0), 0x1234_5678_9abc_def0)
        XCTAssertEqual(second.regionsLost, [])
    }

    /// Every guarded mapping is released with the last table that uses it.
    func testGuardSlotsAreReleased() throws {
        let before = GuestRAMGuard.mappingsInUse
        do {
            let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 1 << 20, backing: .anonymous)])
            XCTAssertEqual(GuestRAMGuard.mappingsInUse, before + 1)
            let again = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 1 << 20, backing: .anonymous),
                                      GuestRAMRegionSpec(gpa: 1 << 30, size: 1 << 20, backing: .anonymous)])
            XCTAssertEqual(GuestRAMGuard.mappingsInUse, before + 3)
            withExtendedLifetime((ram, again)) {}
        }
        XCTAssertEqual(GuestRAMGuard.mappingsInUse, before)
    }
}

private func NSTemporaryDirectoryPath() -> String {
    if let t = getenv("TMPDIR") { return String(cString: t) }
    return "/tmp"
}
