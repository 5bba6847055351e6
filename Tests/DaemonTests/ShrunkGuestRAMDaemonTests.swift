import Bridge
import Glibc
import Posix
import VTd
import VTdBridgeClient
import VTdGuest
import Wire
import XCTest

/// A VMM that shrinks the file behind guest RAM must not kill vtdbridged:
/// each path that reads the guest's tables, over a memfd, a tmpfs file and
/// a regular file, against a real daemon process. The VMM gets
/// MEMORY_LOST (PROTOCOL.md §1.7), the operator sees the region in
/// `status`, and the daemon goes on answering both sockets.
final class ShrunkGuestRAMDaemonTests: XCTestCase {
    let sid = SourceID("00:03.0")!
    let ramSize: UInt64 = 64 << 20
    let nearIOVA: UInt64 = 0x1000
    let farIOVA: UInt64 = 0x80_0000_0000

    enum Backing: CaseIterable { case memfd, tmpfsFile, regularFile }
    enum Path: CaseIterable { case domainInvalidation, globalInvalidation, pageInvalidationThenReplay, replay, reconnectReady }

    func makeFile(_ backing: Backing) throws -> FileDescriptor {
        if backing == .memfd { return try FileDescriptor.memoryFile(name: "shrinking-guest-ram", size: ramSize) }
        let dir = backing == .tmpfsFile ? "/dev/shm" : (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
        var template = Array("\(dir)/vtdb-ram-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0, "mkstemp in \(dir): errno \(errno)")
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let file = FileDescriptor(adopting: fd, subject: dir)
        try file.truncate(to: ramSize)
        return file
    }

    func check(_ path: Path, _ backing: Backing) throws {
        let what = "\(path), \(backing)"
        let daemon = try DaemonHarness()
        defer { XCTAssertEqual(daemon.terminate(), 0, "\(what): \(daemon.log)") }
        let fd = try makeFile(backing)
        let caps = IOMMUCapabilities.make()
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: ramSize, backing: .fileDescriptor(fd, offset: 0))])
        var writer = try GuestTableWriter(memory: ram, caps: caps, tableArea: (56 << 20)..<(64 << 20))
        var vmm = try EventClient(path: daemon.eventSocket)
        try vmm.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try vmm.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: ramSize, offset: 0)]), fds: [fd])
        try vmm.require(.setRootTable(writer.rootTable))
        try vmm.require(.setTranslation(true))
        try vmm.require(.ready)
        let batch = try writer.attach(sid, domain: 1) + writer.map(domain: 1, iova: nearIOVA, gpa: 0x10000)
            + writer.map(domain: 1, iova: farIOVA, gpa: 0x20000)
        try vmm.require(.invalidate(batch.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }))
        XCTAssertEqual(try mappingCount(daemon), 2, what)

        // The VMM cuts the file just below the far mapping's tables.
        let farTables = try XCTUnwrap(writer.existingSlot(domain: 1, iova: farIOVA, level: 3)) & ~0xfff
        try fd.truncate(to: farTables)

        func invalidate(_ d: InvalidationDescriptor) throws -> EventReply {
            try vmm.request(.invalidate([InvalidationWords(low: d.encoded.low, high: d.encoded.high)]))
        }
        var lostVia: String
        switch path {
        case .domainInvalidation, .globalInvalidation:
            let scope: InvalidationDescriptor.IOTLBScope = path == .domainInvalidation ? .domain(1) : .global
            let reply = try invalidate(.iotlb(scope, drainReads: false, drainWrites: false))
            XCTAssertEqual(reply.status, .memoryLost, "\(what): \(reply.message)")
            XCTAssertTrue(reply.message.contains("SIGBUS") && reply.message.contains("SET_MEM_TABLE"), reply.message)
            lostVia = "event channel"
        case .pageInvalidationThenReplay, .replay:
            if path == .pageInvalidationThenReplay {
                let psi = try invalidate(writer.pageInvalidation(domain: 1, iova: nearIOVA, sizeShift: 12))
                XCTAssertEqual(psi.status, .ok, "\(what): the near walk stays in the remaining file: \(psi.message)")
            }
            let replay = try daemon.control().require("replay", ["all": true])
            let lost = try XCTUnwrap(replay.objectValue?["lost-memory-regions"]?.arrayValue, "\(what): \(replay)")
            XCTAssertEqual(lost.first?.objectValue?["gpa"]?.stringValue, "0x0", what)
            lostVia = "control socket"
        case .reconnectReady:
            vmm.close()
            vmm = try EventClient(path: daemon.eventSocket)
            try vmm.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
            let ready = try vmm.request(.ready)
            XCTAssertEqual(ready.status, .memoryLost, "\(what): \(ready.message)")
            lostVia = "READY"
        }

        // Still serving, on both sockets; the operator sees what was lost.
        XCTAssertTrue(daemon.process.isRunning, "\(what) via \(lostVia): \(daemon.log)")
        XCTAssertEqual(try vmm.request(.ping).status, .ok, what)
        let status = try daemon.control().require("status")
        let vmmStatus = try XCTUnwrap(status.objectValue?["vmm"]?.objectValue)
        XCTAssertEqual(vmmStatus["memory-regions"]?.intValue, 0, what)
        let lost = try XCTUnwrap(vmmStatus["lost-memory-regions"]?.arrayValue)
        XCTAssertEqual(lost.count, 1, what)
        XCTAssertTrue(lost.first?.objectValue?["message"]?.stringValue?.contains("F_SEAL_SHRINK") ?? false, what)
        // The root table was in the lost file: as hardware that cannot fetch
        // it, nothing stays mapped, and the shadow says so.
        XCTAssertEqual(try mappingCount(daemon), 0, what)
        let device = status.objectValue?["devices"]?.arrayValue?.first?.objectValue
        XCTAssertGreaterThanOrEqual(device?["faults"]?.objectValue?["guest-ram-lost"]?.intValue ?? 0, 1, what)
        XCTAssertTrue(daemon.log.contains("guest RAM region lost"), what)

        // A new memory table brings the region back; the daemon maps again.
        let fresh = try makeFile(.memfd)
        let ram2 = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: ramSize, backing: .fileDescriptor(fresh, offset: 0))])
        var writer2 = try GuestTableWriter(memory: ram2, caps: caps, tableArea: (56 << 20)..<(64 << 20))
        try vmm.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: ramSize, offset: 0)]), fds: [fresh])
        try vmm.require(.setRootTable(writer2.rootTable))
        let again = try writer2.attach(sid, domain: 1) + writer2.map(domain: 1, iova: nearIOVA, gpa: 0x10000)
        try vmm.require(.invalidate(again.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }))
        XCTAssertEqual(try mappingCount(daemon), 1, what)
        vmm.close()
    }

    func mappingCount(_ daemon: DaemonHarness) throws -> Int? {
        try daemon.control().require("mappings", ["guest": .string(sid.description)]).objectValue?["mappings"]?.arrayValue?.count
    }

    func testDomainInvalidation() throws { for b in Backing.allCases { try check(.domainInvalidation, b) } }
    func testGlobalInvalidation() throws { for b in Backing.allCases { try check(.globalInvalidation, b) } }
    func testPageInvalidationThenReplay() throws { for b in Backing.allCases { try check(.pageInvalidationThenReplay, b) } }
    func testReplay() throws { for b in Backing.allCases { try check(.replay, b) } }
    func testReconnectingVMMReady() throws { for b in Backing.allCases { try check(.reconnectReady, b) } }
}
