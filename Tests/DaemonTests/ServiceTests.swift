import Bridge
import Foundation
import Glibc
import Posix
import UnixIO
import VTd
import VTdBridgeClient
import VTdGuest
import Wire
import XCTest

/// vtdbridged as systemd runs it, seen from outside the process: SIGHUP
/// reloads (with RELOADING=1 and READY=1), --check-config, STATUS= while a
/// VMM maps, and a liveness probe that is not taken for a VMM. The unit's
/// own checks under a real systemd: scripts/vm/systemd-service.sh.
final class ServiceTests: XCTestCase {
    /// A datagram socket standing in for systemd's NOTIFY_SOCKET.
    final class NotifySocket {
        let directory: String
        let path: String
        let fd: Int32

        init() throws {
            directory = NSTemporaryDirectory() + "notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            path = directory + "/notify.sock"
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard bound == 0 else { throw HarnessError("bind \(path): errno \(errno)") }
        }

        /// The next datagram within `timeout` seconds, or nil.
        func receive(timeout: Double = 10) -> String? {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
        }

        /// Datagrams until one contains `text` (included), within `timeout`.
        func receive(until text: String, timeout: Double = 20) -> [String] {
            var got: [String] = []
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline, let m = receive(timeout: max(0.05, deadline.timeIntervalSinceNow)) {
                got.append(m)
                if m.contains(text) { break }
            }
            return got
        }

        deinit {
            close(fd)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private func writeConfig(_ path: String, _ text: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    private func waitFor(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    private func guests(_ daemon: DaemonHarness) throws -> [String] {
        try daemon.control().require("status")["devices"]?.arrayValue?.compactMap { $0["guest"]?.stringValue } ?? []
    }

    // MARK: SIGHUP

    func testSIGHUPReloadsLogLevelAndDevicesAndAnInvalidFileIsRefused() throws {
        let notify = try NotifySocket()
        let file = notify.directory + "/vm.json"
        try writeConfig(file, #"{"log": {"level": "info"}, "devices": ["0000:01:00.0=00:03.0"]}"#)
        let daemon = try DaemonHarness(devices: [], extraArguments: ["--config", file],
                                       environment: ["NOTIFY_SOCKET": notify.path], logLevel: nil)
        XCTAssertTrue(notify.receive(until: "READY=1").last?.contains("READY=1") ?? false)
        XCTAssertEqual(try guests(daemon), ["00:03.0"])
        // At info, an accepted connection is not logged (it is at debug).
        try UnixConnection.connect(path: daemon.eventSocket).close()
        XCTAssertEqual(try daemon.control().require("log-level")["level"], "info")

        // One device out, one in, a quota, the log level, and a key that needs a restart.
        try writeConfig(file, #"""
            {"log": {"level": "debug"}, "mapping-quota": 64, "walk-budget": 1048576,
             "devices": ["0000:02:00.0=00:04.0"], "vfio": {"sysfs": "/nonexistent/sys"}}
            """#)
        XCTAssertEqual(kill(daemon.process.processIdentifier, SIGHUP), 0)
        let reloading = notify.receive(until: "READY=1")
        let reloadingIndex = reloading.firstIndex { $0.contains("RELOADING=1") }
        let readyIndex = reloading.firstIndex { $0.contains("READY=1") }
        XCTAssertNotNil(reloadingIndex, "\(reloading)")
        XCTAssertNotNil(readyIndex, "\(reloading)")
        if let reloadingIndex, let readyIndex { XCTAssertLessThan(reloadingIndex, readyIndex, "RELOADING=1, then READY=1: \(reloading)") }
        XCTAssertTrue(reloading[reloadingIndex ?? 0].contains("MONOTONIC_USEC="), "\(reloading)")
        XCTAssertTrue(reloading.last?.contains("STATUS=1 device(s), no VMM, 0 mapping(s); reloaded: log.level: info → debug") ?? false, "\(reloading)")

        XCTAssertEqual(try guests(daemon), ["00:04.0"])
        let status = try daemon.control().require("status")
        let reload = try XCTUnwrap(status["last-reload"])
        XCTAssertEqual(reload["outcome"], "applied")
        XCTAssertEqual(reload["changes"], ["log.level: info → debug", "mapping-quota: none → 64", "walk-budget: 4194304 → 1048576",
                                           "devices: detached 00:03.0 (0000:01:00.0)", "devices: attached 00:04.0 (0000:02:00.0)"])
        XCTAssertEqual(reload["needs-restart"], ["vfio.sysfs"])
        XCTAssertEqual(try daemon.control().require("log-level")["level"], "debug")
        XCTAssertTrue(daemon.log.contains("configuration reloaded: log.level: info → debug; mapping-quota: none → 64"), daemon.log)
        XCTAssertTrue(daemon.log.contains("devices: attached 00:04.0 (0000:02:00.0)"), daemon.log)
        XCTAssertTrue(daemon.log.contains("keys=vfio.sysfs"), daemon.log)
        // Debug now reaches the log.
        try UnixConnection.connect(path: daemon.eventSocket).close()
        try waitFor("the debug line of an accepted connection") { daemon.log.contains("event channel: connection accepted") }

        // A file that no longer validates: refused, everything as it was.
        try writeConfig(file, #"{"log": {"level": "loud"}, "devices": []}"#)
        XCTAssertEqual(kill(daemon.process.processIdentifier, SIGHUP), 0)
        let refused = notify.receive(until: "READY=1")
        XCTAssertTrue(refused.contains { $0.contains("RELOADING=1") }, "\(refused)")
        XCTAssertTrue(refused.last?.contains("reload refused, the running configuration is kept: config key \"log.level\"") ?? false, "\(refused)")
        XCTAssertEqual(try guests(daemon), ["00:04.0"])
        XCTAssertEqual(try daemon.control().require("log-level")["level"], "debug")
        let after = try daemon.control().require("status")["last-reload"]
        XCTAssertEqual(after?["outcome"], "refused")
        XCTAssertTrue(after?["error"]?.stringValue?.contains("\"loud\" is not a log level") ?? false, "\(String(describing: after))")
        XCTAssertTrue(daemon.log.contains("configuration reload refused, the running configuration is kept: config key \"log.level\""), daemon.log)

        // Still serving, and SIGTERM still stops it cleanly.
        XCTAssertTrue(daemon.process.isRunning)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.eventSocket), "the socket files go with a clean stop")
    }

    // MARK: --check-config

    func testCheckConfigValidatesAndExitsWithoutOpeningAnything() throws {
        let dir = NSTemporaryDirectory() + "check-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/vm.json"
        try writeConfig(file, #"""
            {"name": "vm7", "backend": "dry-run", "event-socket": "\#(dir)/e.sock", "control": {"socket": "\#(dir)/c.sock"},
             "state-directory": "\#(dir)/state", "devices": ["0000:01:00.0=00:03.0,quota=9"]}
            """#)
        var r = try runTool("vtdbridged", ["--config", file, "--check-config"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "vtdbridged: configuration OK: name vm7, backend dry-run, 1 device(s) (0000:01:00.0=00:03.0,quota=9), "
                       + "event socket \(dir)/e.sock, control socket \(dir)/c.sock, state directory \(dir)/state, log level info, mapping quota none\n")
        for path in ["/e.sock", "/c.sock", "/state"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + path), "\(path) was created")
        }
        // Flags count as at a start.
        r = try runTool("vtdbridged", ["--config", file, "--check-config", "--name", "vm8", "--device", "group:3=00:05.0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("name vm8, backend dry-run, 1 device(s) (group:3=00:05.0)"), r.stdout)

        r = try runTool("vtdbridged", ["--config", file, "--check-config", "--log-level", "loud"])
        XCTAssertEqual(r.status, 78)
        XCTAssertEqual(r.stdout, "")
        XCTAssertTrue(r.stderr.contains("config key \"log.level\" (from --log-level): \"loud\" is not a log level"), r.stderr)

        try writeConfig(file, #"{"devices": ["01:00.0=00:03.0", "02:00.0=00:03.0"]}"#)
        r = try runTool("vtdbridged", ["--config", file, "--check-config"])
        XCTAssertEqual(r.status, 78)
        XCTAssertTrue(r.stderr.contains("already used by entry 1"), r.stderr)

        r = try runTool("vtdbridged", ["--config", dir + "/missing.json", "--check-config"])
        XCTAssertEqual(r.status, 78)
        XCTAssertTrue(r.stderr.contains("no such file"), r.stderr)
    }

    // MARK: STATUS=

    func testStatusFollowsMappingsWhileTheVMMIsConnectedAtMostOncePerSecond() throws {
        let notify = try NotifySocket()
        let daemon = try DaemonHarness(environment: ["NOTIFY_SOCKET": notify.path])
        XCTAssertTrue(notify.receive(until: "READY=1").last?.contains("STATUS=1 device(s), no VMM, 0 mapping(s)") ?? false)
        let sid = SourceID("00:03.0")!
        let (client, guestTables, fd) = try daemon.connectGuest(sid)
        var writer = guestTables
        defer { withExtendedLifetime(fd) {} }
        // 40 batches of one page each, over about half a second.
        let started = Date()
        for page in 1...40 {
            let batch = try writer.map(domain: 1, iova: 0x10_0000 + UInt64(page) << 12, gpa: 0x20_0000 + UInt64(page) << 12)
                + [GuestTableWriter<GuestRAM>.wait]
            let reply = try client.request(.invalidate(batch.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }))
            XCTAssertEqual(reply.status, .ok, reply.message)
            usleep(12_000)
        }
        let burst = Date().timeIntervalSince(started)
        // The trailing update arrives within a second of the last change.
        var statuses: [String] = []
        let deadline = Date().addingTimeInterval(burst + 5)
        while Date() < deadline {
            guard let m = notify.receive(timeout: 0.5) else { continue }
            if m.hasPrefix("STATUS=") { statuses.append(m) }
            if m.contains("41 mapping(s)") { break }
        }
        XCTAssertEqual(statuses.last, "STATUS=1 device(s), VMM ready, 41 mapping(s)", "\(statuses)")
        XCTAssertTrue(statuses.contains { $0.contains("VMM ready") && !$0.contains("41 mapping(s)") } || statuses.count == 1,
                      "intermediate states while mapping: \(statuses)")
        // At most one per second, plus the first and the trailing one.
        XCTAssertLessThanOrEqual(statuses.count, Int(burst.rounded(.up)) + 3, "rate-limited: \(statuses) in \(burst) s")
        let counts = statuses.compactMap { line -> Int? in
            guard let r = line.range(of: #"(\d+) mapping\(s\)"#, options: .regularExpression) else { return nil }
            return Int(line[r].split(separator: " ")[0])
        }
        XCTAssertEqual(counts, counts.sorted(), "mapping counts only grow here: \(statuses)")

        client.close()
        let gone = notify.receive(until: "no VMM")
        XCTAssertTrue(gone.last?.contains("STATUS=1 device(s), no VMM, 41 mapping(s)") ?? false, "\(gone)")
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    // MARK: the liveness probe

    func testAProbeOfTheEventSocketIsNotLoggedAsAVMM() throws {
        let daemon = try DaemonHarness()
        // What a second daemon's start does to a socket path it finds in
        // use: connect, and close without a word.
        try UnixConnection.connect(path: daemon.eventSocket).close()
        let r = try runTool("vtdbridged", ["--backend", "dry-run", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket + "2",
                                           "--state-directory", daemon.stateDirectory + "2"])
        XCTAssertEqual(r.status, 1, "the second daemon found this one: \(r.stderr)")
        try waitFor("both probes to close") {
            daemon.log.components(separatedBy: "closed without sending anything").count == 3
        }
        XCTAssertFalse(daemon.log.contains("VMM connected"), daemon.log)
        XCTAssertFalse(daemon.log.contains("VMM disconnected"), daemon.log)
        // Nor counted as one.
        XCTAssertEqual(try vmmConnections(daemon), 0)

        // A VMM that speaks is logged as one, once.
        let (client, _, _) = try daemon.connectGuest(SourceID("00:03.0")!)
        client.close()
        try waitFor("the VMM's disconnect") { daemon.log.contains("VMM disconnected") }
        XCTAssertEqual(daemon.log.components(separatedBy: "VMM connected").count, 2, daemon.log)
        XCTAssertEqual(try vmmConnections(daemon), 1)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// vtdbridge_vmm_connections_total, as `vtdbridgectl metrics` prints it.
    private func vmmConnections(_ daemon: DaemonHarness) throws -> Int {
        let text = try XCTUnwrap(daemon.control().require("metrics")["text"]?.stringValue)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("vtdbridge_vmm_connections_total{") }, text)
        return try XCTUnwrap(Int(line.split(separator: " ").last ?? ""), String(line))
    }
}
