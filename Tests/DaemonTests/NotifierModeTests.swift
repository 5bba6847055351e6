import Bridge
import Foundation
import Glibc
import Posix
import UnixIO
import VTd
import VTdBridgeClient
import Wire
import XCTest

/// A VMM that walks the guest tables itself and sends notifier events.
final class NotifierModeTests: XCTestCase {
    func testNotifyFramesMapAndUnmapThroughTheDaemon() throws {
        let daemon = try DaemonHarness()
        let caps = IOMMUCapabilities.make()
        let fd = try FileDescriptor.memoryFile(name: "notifier-ram", size: 16 << 20)
        defer { try? fd.close() }
        let client = try EventClient(path: daemon.eventSocket)
        try client.require(.hello(version: 1, flags: HelloFlags.notifierMode.rawValue, cap: caps.cap, ecap: caps.ecap))
        try client.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 16 << 20, offset: 0)]), fds: [fd])
        try client.require(.ready)
        // INVALIDATE is refused in notifier mode.
        XCTAssertEqual(try client.request(.invalidate([InvalidationWords(low: 0x12, high: 0)])).status, .badState)
        let sid: UInt16 = 0x18  // 00:03.0
        // Translation was never enabled: with GCMD.TE clear nothing may be
        // mapped, so a NOTIFY is refused and changes nothing (§1.6).
        let early = try client.request(.notify([
            NotifierEntry(iova: 0x1000, translatedAddress: 0x8000, addressMask: 0xfff, sourceID: sid, permission: .readWrite),
        ]))
        XCTAssertEqual(early.status, .badState)
        XCTAssertTrue(early.message.contains("translation"), early.message)
        XCTAssertEqual(try daemon.control().require("mappings", ["guest": "00:03.0"])["mappings"]?.arrayValue?.count, 0)
        try client.require(.setTranslation(true))
        let map = try client.request(.notify([
            NotifierEntry(iova: 0x1000, translatedAddress: 0x8000, addressMask: 0xfff, sourceID: sid, permission: .readWrite),
            NotifierEntry(iova: 0x20_0000, translatedAddress: 0x40_0000, addressMask: 0x1f_ffff, sourceID: sid, permission: .read),
            NotifierEntry(iova: 0x3000, translatedAddress: 1 << 40, addressMask: 0xfff, sourceID: sid, permission: .readWrite),
        ]))
        XCTAssertEqual(map.status, .ok, map.message)
        guard case let .batch(body) = map.body else { return XCTFail("no batch") }
        XCTAssertEqual(body.maps, 2)
        XCTAssertEqual(body.faults, 1, "the entry outside guest RAM")
        let held = try daemon.control().require("mappings", ["guest": "00:03.0"])
        XCTAssertEqual(held["mappings"]?.arrayValue?.compactMap { $0["iova"]?.stringValue }, ["0x1000", "0x200000"])
        // The device's mode says where its mappings come from; the daemon
        // reads no context entry, so there is no domain or depth to show.
        XCTAssertEqual(held["mode"]?.stringValue, "notifier")
        XCTAssertEqual(held["domain"], .null)
        XCTAssertEqual(held["levels"], .null)
        // Clearing translation unmaps everything and forgets what was notified.
        try client.require(.setTranslation(false))
        XCTAssertEqual(try daemon.control().require("mappings", ["guest": "00:03.0"])["mappings"]?.arrayValue?.count, 0)
        try client.require(.setTranslation(true))
        XCTAssertEqual(try daemon.control().require("mappings", ["guest": "00:03.0"])["mappings"]?.arrayValue?.count, 0)
        XCTAssertEqual(try client.request(.notify([
            NotifierEntry(iova: 0x1000, translatedAddress: 0x8000, addressMask: 0xfff, sourceID: sid, permission: .readWrite),
            NotifierEntry(iova: 0x20_0000, translatedAddress: 0x40_0000, addressMask: 0x1f_ffff, sourceID: sid, permission: .read),
        ])).status, .ok)
        // An unmap that would cut the 2 MiB mapping in two is refused.
        let bisect = try client.request(.notify([NotifierEntry(iova: 0x20_0000, translatedAddress: 0, addressMask: 0xfff, sourceID: sid, permission: [])]))
        XCTAssertEqual(bisect.status, .descriptor)
        XCTAssertTrue(bisect.message.contains("in two"), bisect.message)
        let unmap = try client.request(.notify([NotifierEntry(iova: 0, translatedAddress: 0, addressMask: 0x3f_ffff, sourceID: sid, permission: [])]))
        XCTAssertEqual(unmap.status, .ok, unmap.message)
        let after = try daemon.control().require("mappings", ["guest": "00:03.0"])
        XCTAssertEqual(after["mappings"]?.arrayValue?.count, 0)
        let status = try daemon.control().require("status")
        XCTAssertEqual(status["vmm"]?["notifier-mode"]?.boolValue, true)
        client.close()
        XCTAssertEqual(daemon.terminate(), 0)
    }

    func testLogLevelAndAttachErrorsThroughTheCLI() throws {
        let daemon = try DaemonHarness()
        var r = try runTool("vtdbridgectl", ["log-level", "warning", "--socket", daemon.controlSocket])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "log level: warning\n")
        r = try runTool("vtdbridgectl", ["log-level", "--socket", daemon.controlSocket, "--json"])
        XCTAssertEqual(try JSONValue.parse(r.stdout)["level"]?.stringValue, "warning")
        // The dry-run backend opens no device, so it has no fd to hand out.
        let client = try daemon.control()
        let (result, fd) = try client.call("attach", ["host": "0000:09:00.0", "guest": "00:09.0", "return-fd": true])
        XCTAssertNil(fd)
        guard case let .failure(error) = result else { return XCTFail("attach with return-fd succeeded on dry-run") }
        XCTAssertEqual(error.code.rawValue, "invalid-argument")
        XCTAssertTrue(error.message.contains("dry-run"), error.message)
        let status = try client.require("status")
        XCTAssertFalse(status["devices"]!.arrayValue!.contains { $0["guest"]?.stringValue == "00:09.0" }, "a refused attach leaves nothing attached")
        // A refused command exits 1 with the code on stderr; an unreachable daemon exits 2.
        r = try runTool("vtdbridgectl", ["detach", "00:1f.7", "--socket", daemon.controlSocket])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not-attached"), r.stderr)
        r = try runTool("vtdbridgectl", ["status", "--socket", daemon.directory + "/nothing.sock"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("is vtdbridged running?"), r.stderr)
        XCTAssertEqual(daemon.terminate(), 0)
    }
}
