import Foundation
import Glibc
import XCTest
import Daemon

/// The systemd unit, checked as `make install` writes it.
final class ConfigUnitFileTests: XCTestCase {
    private var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `make verify-unit` substitutes the install paths, runs
    /// `systemd-analyze verify` on the result offline, and checks the
    /// sandbox's exposure score. Requires systemd-analyze: the Makefile
    /// installs it (apt-get install systemd); the test does not skip.
    func testSystemdAnalyzeVerifiesTheInstalledUnit() throws {
        let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard analyze != nil else {
            XCTFail("systemd-analyze is not installed, so the unit cannot be verified: run `make verify-unit` (it installs the systemd package) or `apt-get install systemd`")
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["make", "--no-print-directory", "-C", repository.path, "verify-unit"]
        // Run as a user would, not as a sub-make of `make test`: variables
        // given to the outer make (PREFIX=…) must not leak in.
        var environment = ProcessInfo.processInfo.environment
        for name in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"] { environment[name] = nil }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        XCTAssertEqual(process.terminationStatus, 0, "make verify-unit failed:\n\(output)")
        XCTAssertTrue(output.contains("verify-unit: OK"), output)
        XCTAssertTrue(output.contains("Overall exposure level for vtdbridged@vm0.service"), output)
        // systemd-analyze verify prints nothing for a clean unit: any line
        // naming the unit file is a warning (it exits 0 on unknown keys).
        // ("/…/vtdbridged@.service:36: Unknown key …", "vtdbridged@vm0.service: Command … is not executable")
        let warnings = output.split(separator: "\n").filter { $0.contains("/vtdbridged@.service:") || $0.hasPrefix("vtdbridged@vm0.service:") }
        XCTAssertEqual(warnings, [], output)
    }

    /// The settings the daemon depends on, read from the template.
    func testTheTemplateCarriesTheDaemonContract() throws {
        let text = try String(contentsOf: repository.appendingPathComponent("systemd/vtdbridged@.service"), encoding: .utf8)
        var settings: [String: [String]] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            settings[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        XCTAssertEqual(settings["ExecStart"], ["@BINDIR@/vtdbridged --config /etc/vtd-bridge/%i.json --name %i"])
        XCTAssertEqual(settings["Type"], ["notify"])
        // `systemctl reload`: SIGHUP, which the daemon reads as a reload
        // (Daemon.handledSignals); systemd 252 has no Type=notify-reload.
        XCTAssertEqual(settings["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        XCTAssertTrue(Daemon.handledSignals.contains(SIGHUP), "without it SIGHUP's default action ends the daemon")
        XCTAssertEqual(settings["NotifyAccess"], ["main"])
        XCTAssertEqual(settings["WatchdogSec"], ["30s"])
        XCTAssertEqual(settings["Restart"], ["on-failure"])
        XCTAssertEqual(settings["RestartPreventExitStatus"], ["78"], "EX_CONFIG, what vtdbridged exits with on a bad config")
        XCTAssertEqual(settings["LimitMEMLOCK"], ["infinity"])
        XCTAssertEqual(settings["LimitNICE"], ["-4"], "Dispatch's user-interactive worker threads ask for nice -4, and nothing lower is needed")
        XCTAssertFalse((settings["CapabilityBoundingSet"] ?? []).joined(separator: " ").contains("CAP_SYS_NICE"),
                       "LimitNICE covers Dispatch's thread priorities; CAP_SYS_NICE would allow far more")
        XCTAssertEqual(settings["RuntimeDirectory"], ["vtd-bridge/%i"], "matches the default socket directory /run/vtd-bridge/<name>")
        XCTAssertEqual(settings["StateDirectory"], ["vtd-bridge/%i"], "matches the default state-directory /var/lib/vtd-bridge/<name>")
        XCTAssertEqual(settings["DevicePolicy"], ["closed"])
        XCTAssertEqual(Set(settings["DeviceAllow"] ?? []), ["/dev/vfio/vfio rw", "char-vfio rw"])
        XCTAssertEqual(settings["RestrictAddressFamilies"], ["AF_UNIX"])
        XCTAssertEqual(settings["SystemCallFilter"], ["@system-service"])
        XCTAssertEqual(settings["KillSignal"], ["SIGTERM"])
        // Restarts keep every mapping: the hand-over signal, its exit status
        // (a success that always restarts), the store, and the socket files.
        XCTAssertEqual(settings["RestartKillSignal"], ["SIGUSR1"], "Daemon.handleSignals hands over on SIGUSR1")
        XCTAssertEqual(settings["SuccessExitStatus"], ["\(Daemon.handOverExitStatus)"])
        XCTAssertEqual(settings["RestartForceExitStatus"], ["\(Daemon.handOverExitStatus)"])
        let storeMax = try XCTUnwrap(Int(settings["FileDescriptorStoreMax"]?.first ?? ""))
        XCTAssertGreaterThanOrEqual(storeMax, 2 + 4 * 32, "two listeners and four descriptors per device, for 32 devices at least")
        XCTAssertEqual(settings["RuntimeDirectoryPreserve"], ["restart"], "the stored listeners' socket files must outlive a restart")
        XCTAssertEqual(settings["StartLimitBurst"], ["20"])
        XCTAssertNil(settings["PrivateDevices"], "PrivateDevices would hide /dev/vfio")
        XCTAssertNil(settings["User"], "opening root-owned /dev/vfio/N needs root")
        // The unit's directories are where the config's defaults point.
        XCTAssertEqual(DaemonConfig.defaultControlSocket(name: "%i"), "/run/" + settings["RuntimeDirectory"]![0] + "/control.sock")
        XCTAssertEqual(DaemonConfig.defaultEventSocket(name: "%i"), "/run/" + settings["RuntimeDirectory"]![0] + "/event.sock")
        XCTAssertEqual(DaemonConfig.defaultStateDirectory(name: "%i"), "/var/lib/" + settings["StateDirectory"]![0])
    }
}
