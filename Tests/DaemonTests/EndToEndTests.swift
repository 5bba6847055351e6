import Foundation
import Glibc
import UnixIO
import VTdBridgeClient
import Wire
import VTd
import XCTest

/// A real daemon process (dry-run backend), the simulator as the VMM, and
/// vtdbridgectl as the operator.
final class EndToEndTests: XCTestCase {
    func testEveryScenarioOfTheSimulatorPasses() throws {
        let daemon = try DaemonHarness()
        let r = try runTool("vtdbridge-sim", ["scenario", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket,
                                              "--device", "00:03.0", "--attach", "0000:02:00.0=00:04.0", "--ram", "2G"])
        XCTAssertEqual(r.status, 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)\nlog:\n\(daemon.log)")
        XCTAssertTrue(r.stdout.contains("9 scenario(s) passed"), r.stdout)
        XCTAssertTrue(r.stdout.contains("1 GiB leaf"), r.stdout)
        XCTAssertTrue(r.stdout.contains("replay over unchanged tables: 0 ioctls"), r.stdout)
        XCTAssertTrue(r.stdout.contains("reconnect: mappings untouched"), r.stdout)

        // The operator's view, through vtdbridgectl.
        let status = try runTool("vtdbridgectl", ["status", "--socket", daemon.controlSocket, "--json"])
        XCTAssertEqual(status.status, 0, status.stderr)
        let object = try JSONValue.parse(status.stdout)
        let devices = try XCTUnwrap(object["devices"]?.arrayValue)
        XCTAssertEqual(devices.compactMap { $0["guest"]?.stringValue }, ["00:03.0", "00:04.0"])
        XCTAssertEqual(object["vmm"]?["connected"]?.boolValue, false, "the simulator has exited")
        XCTAssertEqual(object["vmm"]?["translation"]?.boolValue, true)
        let text = try runTool("vtdbridgectl", ["status", "--socket", daemon.controlSocket])
        XCTAssertTrue(text.stdout.contains("GUEST"), text.stdout)
        XCTAssertTrue(text.stdout.contains("0000:02:00.0"), text.stdout)

        // The mappings of 00:03.0 as the operator sees them, and as the sim left them.
        let mappings = try runTool("vtdbridgectl", ["mappings", "00:03.0", "--socket", daemon.controlSocket, "--json"])
        let m = try JSONValue.parse(mappings.stdout)
        XCTAssertEqual(m["device"]?.stringValue, "00:03.0")
        XCTAssertEqual(m["mappings"]?.arrayValue?.count, 16)
        XCTAssertEqual(m["mappings"]?[0]?["iova"]?.stringValue, "0x100000000")

        // Metrics in Prometheus text format.
        let metrics = try runTool("vtdbridgectl", ["metrics", "--socket", daemon.controlSocket])
        XCTAssertTrue(metrics.stdout.contains("vtdbridge_maps_total"), metrics.stdout)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// event-busy-poll-us keeps the loop polling after each VMM request; the
    /// daemon must still serve the VMM, the control socket and SIGTERM, and
    /// a client that spins for its reply must get it.
    func testBusyPollingDaemonAndSpinningClientServeEverything() throws {
        let daemon = try DaemonHarness(environment: ["VTDBRIDGE_EVENT_BUSY_POLL_US": "2000"])
        let load = try runTool("vtdbridge-sim", ["load", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket,
                                                 "--device", "00:03.0", "--count", "2000", "--batch", "8", "--json", "--ram", "64M"])
        XCTAssertEqual(load.status, 0, "stdout:\n\(load.stdout)\nstderr:\n\(load.stderr)\nlog:\n\(daemon.log)")
        let result = try JSONValue.parse(load.stdout)
        XCTAssertEqual(result["invalidations"]?.int64Value, 2000)

        let client = try EventClient(path: daemon.eventSocket)
        client.spinBeforeBlocking = .milliseconds(5)
        let reply = try client.request(.hello(version: 1, flags: 0, cap: IOMMUCapabilities.make().cap, ecap: IOMMUCapabilities.make().ecap))
        XCTAssertEqual(reply.status, .ok, reply.message)
        XCTAssertEqual(try client.request(.ping).status, .ok)
        client.close()

        let status = try runTool("vtdbridgectl", ["status", "--socket", daemon.controlSocket, "--json"])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// Pipelined requests: the daemon reads them in one recvmsg and answers
    /// them in one sendmsg, so the client's reads find several replies (and
    /// a reply's refusal text) in one buffer; each comes back whole, in
    /// order, with its own tag checked by the client.
    func testPipelinedRepliesArriveWholeAndInOrder() throws {
        let daemon = try DaemonHarness()
        let client = try EventClient(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        try client.send(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        for _ in 0..<50 { try client.send(.ping) }
        try client.send(.invalidate([]))
        try client.send(.ping)
        XCTAssertEqual(try client.receive().status, .ok)
        for _ in 0..<50 { XCTAssertEqual(try client.receive().status, .ok) }
        let refused = try client.receive()
        XCTAssertNotEqual(refused.status, .ok, "an empty INVALIDATE is refused")
        XCTAssertTrue(refused.message.contains("INVALIDATE count is 0"), refused.message)
        XCTAssertEqual(try client.receive().status, .ok, "the connection goes on after a refusal")
        client.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// A client with thousands of requests in flight finds the start
    /// of the next reply behind the one it returns, so its buffer never
    /// empties; it is compacted every 64 KiB instead. Thousands of replies
    /// (several hundred KiB) must still come back whole, in order, tags
    /// checked, across those compactions.
    func testWindowedPipelineStaysInOrderAcrossBufferCompaction() throws {
        let daemon = try DaemonHarness()
        let client = try EventClient(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        try client.send(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        let window = 4_000, total = 20_000
        for _ in 0..<window { try client.send(.ping) }
        XCTAssertEqual(try client.receive().status, .ok, "HELLO")
        for sent in window..<(total + window) {
            XCTAssertEqual(try client.receive().status, .ok)
            if sent < total { try client.send(.ping) }
        }
        client.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    func testSIGTERMUnmapsClosesAndExitsZero() throws {
        let daemon = try DaemonHarness()
        let r = try runTool("vtdbridge-sim", ["scenario", "map", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket,
                                              "--device", "00:03.0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(daemon.terminate(), 0)
        let log = daemon.log
        XCTAssertTrue(log.contains("signal received; stopping"), log)
        XCTAssertTrue(log.contains("shutting down"), log)
        XCTAssertTrue(log.contains("stopped"), log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.controlSocket), "the socket is removed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.eventSocket))
    }

    func testShutdownCommandStopsTheDaemon() throws {
        let daemon = try DaemonHarness()
        let r = try runTool("vtdbridgectl", ["shutdown", "--socket", daemon.controlSocket])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("stopping"))
        daemon.process.waitUntilExit()
        XCTAssertEqual(daemon.process.terminationStatus, 0)
    }

    func testRuntimeAttachmentsSurviveARestart() throws {
        let directory = NSTemporaryDirectory() + "vtdbridged-restart-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        var daemon: DaemonHarness? = try DaemonHarness(devices: [], directory: directory)
        let attach = try runTool("vtdbridgectl", ["attach", "0000:05:00.0", "00:05.0", "--quota", "100", "--socket", daemon!.controlSocket])
        XCTAssertEqual(attach.status, 0, attach.stderr)
        XCTAssertTrue(attach.stdout.contains("attached 0000:05:00.0 as guest 00:05.0"), attach.stdout)
        // A crash: no chance to clean up.
        XCTAssertEqual(daemon!.terminate(signal: SIGKILL), 9)
        let stateFile = directory + "/state/attachments.json"
        XCTAssertTrue(FileManager.default.fileExists(atPath: stateFile))
        daemon!.process.waitUntilExit()
        let log = DaemonHarness.self
        _ = log
        // Start again in the same directory: the stale sockets are replaced
        // and the attachment comes back.
        let second = try DaemonHarness(devices: [], directory: directory)
        let status = try JSONValue.parse(try runTool("vtdbridgectl", ["status", "--json", "--socket", second.controlSocket]).stdout)
        let devices = try XCTUnwrap(status["devices"]?.arrayValue)
        XCTAssertEqual(devices.count, 1, second.log)
        XCTAssertEqual(devices.first?["guest"]?.stringValue, "00:05.0")
        XCTAssertEqual(devices.first?["persistent"]?.boolValue, true)
        XCTAssertTrue(second.log.contains("restored attachment"), second.log)
        // Detach forgets it for good.
        XCTAssertEqual(try runTool("vtdbridgectl", ["detach", "00:05.0", "--socket", second.controlSocket]).status, 0)
        XCTAssertFalse(try String(contentsOfFile: stateFile, encoding: .utf8).contains("00:05.0"))
        daemon = nil
        XCTAssertEqual(second.terminate(), 0)
    }

    func testASecondDaemonOnTheSameSocketsExitsWithAClearError() throws {
        let daemon = try DaemonHarness()
        let r = try runTool("vtdbridged", ["--backend", "dry-run", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket,
                                           "--state-directory", daemon.stateDirectory + "2"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("another daemon"), r.stderr)
        // The first one still serves.
        XCTAssertNoThrow(try daemon.control().require("status"))
        XCTAssertEqual(daemon.terminate(), 0)
    }

    func testSystemdNotificationsAreSent() throws {
        let dir = NSTemporaryDirectory() + "notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        XCTAssertEqual(bound, 0)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let daemon = try DaemonHarness(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"])
        func receive() -> String {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        }
        // STATUS lines may come first (devices attach before READY).
        var ready = ""
        for _ in 0..<10 where !ready.contains("READY=1") { ready = receive() }
        XCTAssertTrue(ready.contains("READY=1"), ready)
        XCTAssertTrue(ready.contains("STATUS=1 device(s), no VMM"), ready)
        // The watchdog is petted at half the interval.
        var messages: [String] = []
        for _ in 0..<4 { messages.append(receive()) }
        XCTAssertTrue(messages.contains { $0.contains("WATCHDOG=1") }, "\(messages)")
        XCTAssertEqual(daemon.terminate(), 0)
        var last = ""
        for _ in 0..<20 {
            let m = receive()
            if m.isEmpty { break }
            last += m + "\n"
            if m.contains("STOPPING=1") { break }
        }
        XCTAssertTrue(last.contains("STOPPING=1"), last)
    }
}
