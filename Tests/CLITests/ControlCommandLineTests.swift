import Foundation
import JSON
import XCTest

/// vtdbridgectl's control commands as processes against a real vtdbridged
/// (dry-run): where options go, exit statuses (README, "The operator's
/// commands"), usage on errors, hints, and the one size format.
final class ControlCommandLineTests: XCTestCase {
    func ctl(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try CLIProcess.run("vtdbridgectl", arguments)
    }

    func testGlobalOptionsWorkBeforeAndAfterTheCommand() throws {
        let daemon = try CLIDaemon()
        let before = try ctl(["--socket", daemon.controlSocket, "--json", "status"])
        XCTAssertEqual(before.status, 0, before.stderr)
        let after = try ctl(["status", "--socket", daemon.controlSocket, "--json"])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertEqual(try JSONValue.parse(before.stdout)["name"]?.stringValue, "vm0")
        XCTAssertEqual(try JSONValue.parse(after.stdout)["name"]?.stringValue, "vm0")
        let mixed = try ctl(["--json", "mappings", "00:03.0", "--socket", daemon.controlSocket])
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        XCTAssertEqual(try JSONValue.parse(mixed.stdout)["device"]?.stringValue, "00:03.0")
        // Without a command after them: a usage error that says so.
        let alone = try ctl(["--socket", daemon.controlSocket])
        XCTAssertEqual(alone.status, 64)
        XCTAssertTrue(alone.stderr.contains("must be followed by a command"), alone.stderr)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// 0 done, 1 refused, 2 unreachable, 64 a bad command line: every command.
    func testExitStatusOfEveryCommand() throws {
        let daemon = try CLIDaemon()
        let s = ["--socket", daemon.controlSocket]
        let done: [[String]] = [["status"], ["mappings", "00:03.0"], ["attach", "0000:02:00.0", "00:04.0", "--quota", "10"],
                                ["detach", "00:04.0"], ["metrics"], ["log-level"],
                                ["log-level", "info"]]
        for args in done {
            let r = try ctl(args + s)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
        }
        // (replay needs a VMM's state; this daemon has none.)
        let refused: [[String]] = [["mappings", "00:09.0"], ["attach", "0000:02:00.0", "00:04.0", "--vfio-user", "relative.sock"],
                                   ["replay", "--all"], ["replay", "00:03.0"],
                                   ["detach", "00:09.0"], ["log-level", "loud"]]
        for args in refused {
            let r = try ctl(args + s)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("vtdbridgectl \(args[0]): "), "\(args): \(r.stderr)")
        }
        let nowhere = ["--socket", daemon.directory + "/nothing.sock"]
        for args in [["status"], ["mappings", "00:03.0"], ["attach", "0000:02:00.0", "00:04.0"], ["detach", "00:03.0"],
                     ["replay", "--all"], ["metrics"], ["log-level"], ["shutdown"]] {
            let r = try ctl(args + nowhere)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("cannot connect to \(daemon.directory)/nothing.sock"), "\(args): \(r.stderr)")
        }
        let usage: [[String]] = [["status", "extra"], ["mappings"], ["attach", "0000:02:00.0"], ["attach", "group:x", "00:04.0"],
                                 ["attach", "0000:02:00.0", "00:04.0", "--quota", "-5"], ["attach", "0000:02:00.0", "00:04.0", "--quota", "many"],
                                 ["detach"], ["replay"], ["replay", "00:03.0", "--all"], ["metrics", "--bogus"], ["log-level", "a", "b"],
                                 ["shutdown", "now"], ["walk", "--device", "00:03.0"], ["frobnicate"]]
        for args in usage {
            let r = try ctl(args + s)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
        }
        let stop = try ctl(["shutdown"] + s)
        XCTAssertEqual(stop.status, 0, stop.stderr)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// An error of a subcommand's arguments prints that subcommand's usage.
    func testErrorsPrintTheSubcommandsUsage() throws {
        var r = try ctl(["attach", "group:x", "00:03.0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("HOST group:x: expected a PCI address"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage: vtdbridgectl attach "), r.stderr)
        r = try ctl(["walk", "--memory", "/nope@0xq", "--root-table", "0", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("Usage: vtdbridgectl walk "), r.stderr)
        r = try ctl(["replay"])
        XCTAssertTrue(r.stderr.contains("Usage: vtdbridgectl replay "), r.stderr)
    }

    func testANegativeQuotaIsAnInvalidValueNotAMissingOne() throws {
        let r = try ctl(["attach", "0000:02:00.0", "00:04.0", "--quota", "-5"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--quota -5: the value is invalid"), r.stderr)
        XCTAssertFalse(r.stderr.lowercased().contains("missing"), r.stderr)
        let zero = try ctl(["attach", "0000:02:00.0", "00:04.0", "--quota", "0"])
        XCTAssertEqual(zero.status, 64)
        XCTAssertTrue(zero.stderr.contains("--quota 0: the value is invalid"), zero.stderr)
    }

    func testHintsNameTheRealInstanceOrThePath() throws {
        let name = "hint-\(getpid())"
        var r = try ctl(["--name", name, "status"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("cannot connect to /run/vtd-bridge/\(name)/control.sock"), r.stderr)
        XCTAssertTrue(r.stderr.contains("systemctl status vtdbridged@\(name))"), r.stderr)
        XCTAssertFalse(r.stderr.contains("@NAME"), r.stderr)
        r = try ctl(["status", "--socket", "/nonexistent/control.sock"])
        XCTAssertEqual(r.status, 2)
        XCTAssertFalse(r.stderr.contains("systemctl"), r.stderr)
        XCTAssertTrue(r.stderr.contains("is vtdbridged running? (nothing listens on that path"), r.stderr)
    }

    func testTheEventSocketIsNamedAsSuch() throws {
        let daemon = try CLIDaemon()
        let r = try ctl(["status", "--socket", daemon.eventSocket])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("\(daemon.eventSocket) is vtdbridged's event socket"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(daemon.directory)/control.sock"), r.stderr)
        XCTAssertFalse(r.stderr.contains("control character"), r.stderr)
        // The daemon is unharmed and still answers on the right socket.
        XCTAssertEqual(try ctl(["status", "--socket", daemon.controlSocket]).status, 0)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// status, mappings and walk print sizes one way (ByteSize).
    func testSizesPrintOneWay() throws {
        let daemon = try CLIDaemon()
        let sim = try CLIProcess.run("vtdbridge-sim", ["scenario", "--event-socket", daemon.eventSocket, "--control-socket", daemon.controlSocket,
                                                      "--device", "00:03.0", "--quiet", "--ram", "2G", "map", "large-pages"])
        XCTAssertEqual(sim.status, 0, sim.stdout + sim.stderr)
        // With the VMM's state kept, replay is done (exit 0) too.
        let replay = try ctl(["replay", "--all", "--socket", daemon.controlSocket])
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, "replay: 0 map(s), 0 unmap(s), 0 fault(s)\n")
        let status = try ctl(["status", "--socket", daemon.controlSocket])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains("RAM region(s), 2 GiB\n"), status.stdout)
        let json = try JSONValue.parse(try ctl(["mappings", "00:03.0", "--json", "--socket", daemon.controlSocket]).stdout)
        let sizes = (json["mappings"]?.arrayValue ?? []).compactMap { $0["size"]?.stringValue }
        XCTAssertFalse(sizes.isEmpty)
        let mappings = try ctl(["mappings", "00:03.0", "--socket", daemon.controlSocket])
        XCTAssertEqual(mappings.status, 0, mappings.stderr)
        for size in Set(sizes) {
            let bytes = try XCTUnwrap(UInt64(size.dropFirst(2), radix: 16))
            let expected = bytes == 4096 ? "4 KiB" : bytes == 2 << 20 ? "2 MiB" : bytes == 1 << 30 ? "1 GiB" : nil
            if let expected { XCTAssertTrue(mappings.stdout.contains("  \(expected)  "), mappings.stdout) }
        }
        for text in [status.stdout, mappings.stdout] {
            XCTAssertNil(text.range(of: #"\b\d+[KMG]\+?\s"#, options: .regularExpression), text)
            XCTAssertNil(text.range(of: #"(?m)  0x[0-9a-f]+  [rw-]{2}$"#, options: .regularExpression), "a size in hex:\n\(text)")
        }
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    func testStatusSaysWhatTheLastReloadDid() throws {
        let directory = NSTemporaryDirectory() + "vtdbridgectl-reload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/vm0.json"
        try #"{"log": {"level": "info"}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try CLIDaemon(arguments: ["--config", config, "--backend", "dry-run", "--name", "vm0", "--event-socket", directory + "/event.sock",
                                              "--control-socket", directory + "/control.sock", "--state-directory", directory + "/state"],
                                   directory: directory)
        var status = try ctl(["status", "--socket", daemon.controlSocket])
        XCTAssertFalse(status.stdout.contains("last reload"), status.stdout)

        try #"{"log": {"level": "debug"}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        try waitUntil("the reload") { try self.ctl(["status", "--socket", daemon.controlSocket]).stdout.contains("last reload") }
        status = try ctl(["status", "--socket", daemon.controlSocket])
        XCTAssertTrue(status.stdout.hasSuffix("last reload: log.level: info → debug\n"), status.stdout)

        try #"{"log": {"level": "loud"}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        try waitUntil("the refusal") { try self.ctl(["status", "--socket", daemon.controlSocket]).stdout.contains("last reload refused") }
        status = try ctl(["status", "--socket", daemon.controlSocket])
        XCTAssertTrue(status.stdout.contains("last reload refused, the running configuration is kept: config key \"log.level\""), status.stdout)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    private func waitUntil(_ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    func testVersionNamesTheCommit() throws {
        for name in ["vtdbridgectl", "vtdbridged", "vtdbridge-sim"] {
            let r = try CLIProcess.run(name, ["--version"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertNotNil(r.stdout.range(of: "^\(name) [0-9]+\\.[0-9]+\\.[0-9]+ \\(git (unknown|[0-9a-f]{7,40}(-dirty)?)\\)\n$",
                                           options: .regularExpression), r.stdout)
        }
    }
}
