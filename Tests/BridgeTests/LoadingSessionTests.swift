import Bridge
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// What a VMM's session does to the guest state (PROTOCOL.md §1.5): an
/// unfinished loading session is dropped, and a change of mapping source
/// takes effect at READY.
final class LoadingSessionTests: SyncTestCase {
    func event(_ iova: UInt64, _ gpa: UInt64, _ perm: DMAPermission = .readWrite) -> NotifierEvent {
        NotifierEvent(sourceID: sid, iova: iova, gpa: gpa, size: 4096, permission: perm)
    }

    func testAnAbandonedLoadingSessionRestoresTheCompletedStateWithoutAKernelCall() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        backend.clearCalls()
        let root = bridge.rootTable
        let memory = bridge.memory
        try bridge.beginLoading(.make(levels: [3]), source: .notifier)
        _ = bridge.setRootTable(nil)
        _ = bridge.setTranslationEnabled(false)
        _ = bridge.setMemory(nil)
        XCTAssertEqual(backend.calls, [], "loading: nothing is synced")
        let report = bridge.abandonLoading()
        XCTAssertEqual(report.ioctls, 0)
        XCTAssertEqual(backend.calls, [])
        XCTAssertFalse(bridge.syncSuspended)
        XCTAssertEqual(bridge.source, .tables)
        XCTAssertEqual(bridge.caps, guest.caps)
        XCTAssertEqual(bridge.rootTable, root)
        XCTAssertTrue(bridge.translationEnabled)
        XCTAssertTrue(bridge.memory === memory)
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000, 0x2000])
        // The state in force is live again: an invalidation takes effect.
        deliver(try guest.writer.map(domain: 1, iova: 0x3000, gpa: 0x12000))
        XCTAssertEqual(backend.calls, [map(0x3000, 0x12000)])
        // A second abandon without a HELLO changes nothing.
        XCTAssertEqual(bridge.abandonLoading().ioctls, 0)
    }

    func testASecondHELLOKeepsTheFirstCheckpointAndREADYEndsIt() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        backend.clearCalls()
        try bridge.beginLoading(guest.caps, source: .tables)
        _ = bridge.setRootTable(nil)
        try bridge.beginLoading(guest.caps, source: .tables)
        _ = bridge.abandonLoading()
        XCTAssertEqual(bridge.rootTable, guest.writer.rootTable, "the first HELLO's checkpoint is the completed state")
        // After READY the loaded state is in force: nothing to go back to.
        try bridge.beginLoading(guest.caps, source: .tables)
        _ = bridge.setRootTable(nil)
        XCTAssertEqual(bridge.resumeSync().unmaps, 1)
        XCTAssertEqual(bridge.abandonLoading().ioctls, 0)
        XCTAssertNil(bridge.rootTable)
    }

    func testAbandoningANotifierSessionKeepsWhatWasNotified() throws {
        try bridge.setCapabilities(guest.caps, source: .notifier)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        XCTAssertNil(bridge.notify([event(0x1000, 0x10000)]).rejected)
        backend.clearCalls()
        // A session that switches to tables forgets the notified mappings...
        try bridge.beginLoading(guest.caps, source: .tables)
        XCTAssertNil(space(sid).notified)
        // ...but it ends unfinished: they are back, and nothing moved.
        XCTAssertEqual(bridge.abandonLoading().ioctls, 0)
        XCTAssertEqual(bridge.source, .notifier)
        XCTAssertEqual(space(sid).notified?.count, 1)
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        XCTAssertEqual(backend.calls, [])
    }

    /// A device detached while a session loads is forgotten by that
    /// session's checkpoint too: attached again, it starts with nothing
    /// notified, as after any attach, and an abandoned session does not
    /// bring back what was notified for it before (found by FuzzSync).
    func testADeviceDetachedWhileLoadingGetsNoNotifiedMappingsBackWhenTheSessionIsAbandoned() throws {
        try bridge.setCapabilities(guest.caps, source: .notifier)
        _ = bridge.setTranslationEnabled(true)
        let other = SourceID(rawValue: 0x20)
        let backend = RecordingBackend(), otherBackend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        try bridge.attach(other, backend: otherBackend)
        XCTAssertNil(bridge.notify([event(0x1000, 0x10000),
                                    NotifierEvent(sourceID: other, iova: 0x2000, gpa: 0x11000, size: 4096, permission: .read)]).rejected)
        XCTAssertEqual(backend.mappings.count, 1)
        try bridge.beginLoading(guest.caps, source: .notifier)
        try bridge.detach(sid)
        let again = RecordingBackend()
        try bridge.attach(sid, backend: again)
        XCTAssertEqual(bridge.abandonLoading().maps, 0)
        XCTAssertEqual(space(sid).notified?.count, 0)
        XCTAssertEqual(again.mappings.count, 0)
        XCTAssertEqual(try bridge.replay(sid).maps, 0)
        XCTAssertEqual(again.mappings.count, 0)
        // The device that stayed attached keeps what was notified for it.
        XCTAssertEqual(space(other).notified?.count, 1)
        XCTAssertEqual(otherBackend.mappings.count, 1)
    }

    /// PROTOCOL.md §1.5: a VMM that reconnects in the other mode starts from
    /// nothing in it; its READY unmaps what the old mode mapped.
    func testSwitchingFromTablesToNotifierModeUnmapsAtREADY() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        backend.clearCalls()
        try bridge.beginLoading(guest.caps, source: .notifier)
        XCTAssertEqual(backend.calls, [])
        let report = bridge.resumeSync()
        XCTAssertEqual(report.maps, 0)
        XCTAssertEqual(space(sid).shadow.count, 0)
        XCTAssertEqual(backend.calls.count, report.unmaps)
        XCTAssertGreaterThan(report.unmaps, 0)
        XCTAssertEqual(TranslationReport(space: space(sid), memory: bridge.memory).mode, "notifier")
    }
}
