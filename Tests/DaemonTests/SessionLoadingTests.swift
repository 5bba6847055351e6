import Bridge
import Glibc
import Posix
import VTd
import VTdBridgeClient
import Wire
import XCTest

/// PROTOCOL.md §1.5: a loading session that ends without READY does not
/// count; the state of the last completed session stays in force.
final class SessionLoadingTests: XCTestCase {
    let sid = SourceID("00:03.0")!

    private func device(_ daemon: DaemonHarness) throws -> JSONValue {
        let status = try daemon.control().require("status")
        return try XCTUnwrap(status["devices"]?.arrayValue?.first { $0["guest"]?.stringValue == "00:03.0" })
    }

    private func waitDisconnected(_ daemon: DaemonHarness) throws {
        for _ in 0 ..< 500 {
            if try daemon.control().require("status")["vmm"]?["connected"]?.boolValue == false { return }
            usleep(10_000)
        }
        XCTFail("the daemon still reports a VMM 5 s after it closed")
    }

    /// A VMM that dies after sending a new memory table (another file, as
    /// after a VMM restart) must not cost the guest its mappings: the next
    /// session's READY compares against the last completed state.
    func testAnUnfinishedSessionIsDroppedAndTheNextREADYUnmapsNothing() throws {
        let daemon = try DaemonHarness()
        defer { XCTAssertEqual(daemon.terminate(), 0, daemon.log) }
        let (first, writer, fd) = try daemon.connectGuest(sid)
        defer { try? fd.close() }
        first.close()
        try waitDisconnected(daemon)
        let before = try device(daemon)
        XCTAssertEqual(before["mappings"]?.intValue, 1)

        // Loading, with a different file behind guest RAM, then gone.
        let other = try FileDescriptor.memoryFile(name: "other-guest-ram", size: 64 << 20)
        defer { try? other.close() }
        let caps = IOMMUCapabilities.make()
        let loading = try EventClient(path: daemon.eventSocket)
        try loading.require(.hello(version: 1, flags: HelloFlags.notifierMode.rawValue, cap: caps.cap, ecap: caps.ecap))
        try loading.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 32 << 20, offset: 0)]), fds: [other])
        try loading.require(.setRootTable(0))
        try loading.require(.setTranslation(false))
        loading.close()
        try waitDisconnected(daemon)
        let vmm = try daemon.control().require("status")["vmm"]
        XCTAssertEqual(vmm?["memory-bytes"]?.intValue, 64 << 20, "the completed session's memory table is back")
        XCTAssertEqual(vmm?["notifier-mode"]?.boolValue, false)
        XCTAssertEqual(vmm?["translation"]?.boolValue, true)
        XCTAssertEqual(vmm?["root-table"]?.stringValue, "0x" + String(writer.rootTable, radix: 16))
        var after = try device(daemon)
        XCTAssertEqual(after["mappings"]?.intValue, 1)
        XCTAssertEqual(after["mode"]?.stringValue, "translated")

        // A VMM that re-sends the original state: READY makes no kernel call.
        let again = try EventClient(path: daemon.eventSocket)
        try again.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try again.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 64 << 20, offset: 0)]), fds: [fd])
        try again.require(.setRootTable(writer.rootTable))
        try again.require(.setTranslation(true))
        try again.require(.ready)
        after = try device(daemon)
        XCTAssertEqual(after["maps"]?.intValue, before["maps"]?.intValue)
        XCTAssertEqual(after["unmaps"]?.intValue, before["unmaps"]?.intValue)
        XCTAssertEqual(after["mappings"]?.intValue, 1)
        again.close()
    }

    /// One that sends nothing but HELLO and READY keeps the completed
    /// session's state, not the unfinished one's.
    func testAREADYAfterAnUnfinishedSessionSyncsTheCompletedState() throws {
        let daemon = try DaemonHarness()
        defer { XCTAssertEqual(daemon.terminate(), 0, daemon.log) }
        let (first, _, fd) = try daemon.connectGuest(sid)
        defer { try? fd.close() }
        first.close()
        try waitDisconnected(daemon)
        let before = try device(daemon)
        let caps = IOMMUCapabilities.make()
        let loading = try EventClient(path: daemon.eventSocket)
        try loading.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try loading.require(.setRootTable(0))
        loading.close()
        try waitDisconnected(daemon)
        let next = try EventClient(path: daemon.eventSocket)
        try next.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try next.require(.ready)
        let after = try device(daemon)
        XCTAssertEqual(after["unmaps"]?.intValue, before["unmaps"]?.intValue, "the root table of the unfinished session was dropped")
        XCTAssertEqual(after["mappings"]?.intValue, 1)
        next.close()
    }
}
