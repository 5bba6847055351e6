import Bridge
import VFIO
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// Notifier mode (the VMM walks the tables and sends IOMMUTLBEntry-like
/// events) and the suspended sync of a reconnecting VMM.
final class NotifierAndReconnectTests: SyncTestCase {
    func event(_ iova: UInt64, _ gpa: UInt64, _ size: UInt64 = 4096, _ perm: DMAPermission = .readWrite, sid: SourceID? = nil) -> NotifierEvent {
        NotifierEvent(sourceID: sid ?? self.sid, iova: iova, gpa: gpa, size: size, permission: perm)
    }

    func notifierBridge() throws -> RecordingBackend {
        try bridge.setCapabilities(guest.caps, source: .notifier)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        return backend
    }

    func testNotifierEventsMapAndUnmapExactly() throws {
        let backend = try notifierBridge()
        var r = bridge.notify([event(0x1000, 0x10000), event(0x20_0000, 0x40_0000, 1 << 21, .read)])
        XCTAssertNil(r.rejected)
        XCTAssertEqual(backend.calls, [map(0x1000, 0x10000), map(0x20_0000, 0x40_0000, 1 << 21, .read)])
        backend.clearCalls()
        // Unchanged re-send: nothing. A replay: nothing.
        r = bridge.notify([event(0x1000, 0x10000)])
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        // Unmap of the whole 2 MiB: one exact unmap.
        r = bridge.notify([event(0x20_0000, 0, 1 << 21, [])])
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x20_0000, size: 1 << 21)])
        assertShadowMatchesKernel(sid, backend)
    }

    func testABisectingNotifierUnmapIsRefusedAndStopsTheBatch() throws {
        let backend = try notifierBridge()
        _ = bridge.notify([event(0x20_0000, 0x40_0000, 1 << 21)])
        backend.clearCalls()
        let r = bridge.notify([event(0x1000, 0x10000), event(0x30_0000, 0, 4096, []), event(0x2000, 0x11000)])
        XCTAssertEqual(r.rejected?.index, 1)
        XCTAssertTrue(r.rejected!.reason.contains("in two"), r.rejected!.reason)
        XCTAssertEqual(backend.calls, [map(0x1000, 0x10000)])
        XCTAssertEqual(space(sid).shadow.count, 2)
    }

    func testNotifierMapReplacesWhatItOverlaps() throws {
        let backend = try notifierBridge()
        _ = bridge.notify([event(0x20_0000, 0x40_0000, 1 << 21)])
        backend.clearCalls()
        _ = bridge.notify([event(0x20_0000, 0x50_0000)])
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x20_0000, size: 1 << 21), map(0x20_0000, 0x50_0000)])
    }

    func testNotifierEventsOutsideRAMAndForUnattachedDevicesMapNothing() throws {
        let backend = try notifierBridge()
        let r = bridge.notify([event(0x1000, 1 << 40), event(0x2000, 0x10000, 4096, .readWrite, sid: sid2)])
        XCTAssertNil(r.rejected)
        XCTAssertEqual(r.report.faults, 1)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(space(sid).faults.counts[.leafOutsideRAM], 1)
    }

    func testSuspendedSyncRecordsStateAndResumeSyncsOnceLeavingUnchangedMappings() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        backend.clearCalls()
        // The VMM reconnects: it re-sends its state; meanwhile the guest
        // changed one page (as if the invalidation was lost with the VMM).
        bridge.suspendSync()
        XCTAssertEqual(bridge.setMemory(guest.memory).ioctls, 0)
        XCTAssertEqual(bridge.setRootTable(nil).ioctls, 0, "suspended: nothing unmapped")
        XCTAssertEqual(bridge.setRootTable(guest.writer.rootTable).ioctls, 0)
        _ = try guest.writer.unmap(domain: 1, iova: 0x2000)
        XCTAssertEqual(bridge.setTranslationEnabled(true).ioctls, 0)
        XCTAssertEqual(backend.calls, [])
        let report = bridge.resumeSync()
        XCTAssertEqual(report.ioctls, 1)
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x2000, size: 0x1000)])
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000])
    }

    func testCapabilitiesWithoutCachingModeAreRefusedOnReconnect() throws {
        XCTAssertThrowsError(try bridge.setCapabilities(.make(cachingMode: false), source: .tables)) {
            XCTAssertEqual(($0 as! BridgeError).code, .cachingModeRequired)
        }
    }

    /// One place accepts capabilities: a SAGAW with no 3-, 4- or 5-level
    /// support is refused by the bridge itself, and a refused HELLO leaves
    /// the source and the caps as they were.
    func testCapabilitiesWithoutWalkableLevelsAreRefusedAndChangeNothing() throws {
        XCTAssertEqual(bridge.source, .tables)
        XCTAssertThrowsError(try bridge.setCapabilities(.make(levels: [2]), source: .notifier)) {
            XCTAssertEqual(($0 as! BridgeError).code, .unsupportedLevels)
            XCTAssertTrue(($0 as! BridgeError).message.contains("SAGAW"))
        }
        XCTAssertEqual(bridge.source, .tables)
        XCTAssertNoThrow(try GuestIOMMU.check(.make(levels: [5])))
        XCTAssertThrowsError(try GuestIOMMU.check(.make(levels: [])))
    }

    /// PROTOCOL.md §1.6: with GCMD.TE clear nothing is mapped, in notifier
    /// mode too; the mode shows in the report, without domain or depth.
    func testNotifierModeMapsNothingWhileTranslationIsDisabled() throws {
        try bridge.setCapabilities(guest.caps, source: .notifier)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        _ = bridge.setTranslationEnabled(false)
        let r = bridge.notify([event(0x1000, 0x10000)])
        XCTAssertNil(r.rejected)
        XCTAssertEqual(r.report.maps, 0)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(space(sid).notified?.count ?? 0, 0, "nothing is recorded to be mapped later")
        XCTAssertEqual(bridge.setTranslationEnabled(true).ioctls, 0)
        XCTAssertEqual(backend.calls, [])
        XCTAssertNil(bridge.notify([event(0x1000, 0x10000)]).rejected)
        XCTAssertEqual(backend.calls, [map(0x1000, 0x10000)])
        let report = TranslationReport(space: space(sid), memory: bridge.memory)
        XCTAssertEqual(report.mode, "notifier")
        XCTAssertNil(report.domain)
        XCTAssertNil(report.levels)
    }
}
