import Bridge
import Glibc
import Logging
import UnixIO
import VTd
import Wire
import XCTest
@testable import Daemon

/// A reload's effect on a dry-run daemon in this process: what changes,
/// what is left as it runs, what it reports. The signal and the process
/// around it: ServiceTests.
final class ConfigReloadTests: XCTestCase {
    private var directory = ""
    private var daemon: Daemon!
    private let level = TestLogLevel()

    private final class TestLogLevel: LogLevelControl, @unchecked Sendable {
        var level: Logger.Level = .info
        func setLevel(_ level: Logger.Level) { self.level = level }
    }

    private func spec(_ text: String) throws -> DeviceSpec { try DeviceSpec.parse(text) }

    /// The configuration the daemon "started" with: two configured devices.
    private var started = DaemonConfig(name: "test")

    override func setUpWithError() throws {
        var template = Array("/tmp/vtdbridge-reload-XXXXXX".utf8CString)
        _ = try XCTUnwrap(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }, "mkdtemp failed")
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        started.backend = .dryRun
        started.stateDirectory = directory
        started.devices = [try spec("0000:01:00.0=00:03.0"), try spec("0000:02:00.0=00:04.0,quota=8")]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        daemon = try Daemon(config: started, signals: SignalDescriptor(signals: []), logger: logger, logLevel: level)
        // What start() does for the file's devices.
        for device in started.devices { try daemon.attachDevice(device, persistent: false) }
    }

    override func tearDown() {
        daemon = nil
        unlink(directory + "/attachments.json")
        rmdir(directory)
    }

    private var attached: [String: String] {
        Dictionary(uniqueKeysWithValues: daemon.devices.map { ($0.key.description, $0.value.hostDescription) })
    }

    func testANewDeviceIsAttachedAndARemovedOneDetached() throws {
        var loaded = started
        loaded.devices = [try spec("0000:02:00.0=00:04.0,quota=8"), try spec("0000:05:00.0=00:05.0")]
        let result = daemon.applyReload(loaded)
        XCTAssertEqual(result.outcome, .applied)
        XCTAssertEqual(attached, ["00:04.0": "0000:02:00.0", "00:05.0": "0000:05:00.0"])
        XCTAssertEqual(result.changes, ["devices: detached 00:03.0 (0000:01:00.0)", "devices: attached 00:05.0 (0000:05:00.0)"])
        XCTAssertEqual(result.needsRestart, [])
        XCTAssertEqual(result.failures, [])
        XCTAssertEqual(daemon.config.devices, loaded.devices, "the next reload compares with this list")
        XCTAssertEqual(daemon.lastReload, result)
        XCTAssertFalse(daemon.devices[SourceID("00:05.0")!]!.persistent, "the file's device, not a runtime attachment")
    }

    func testAnotherHostForAGuestIsDetachedAndAttachedAgain() throws {
        var loaded = started
        loaded.devices[0] = try spec("0000:09:00.0=00:03.0")
        let result = daemon.applyReload(loaded)
        XCTAssertEqual(attached["00:03.0"], "0000:09:00.0")
        XCTAssertEqual(result.changes, ["devices: detached 00:03.0 (0000:01:00.0)", "devices: attached 00:03.0 (0000:09:00.0)"])
    }

    func testAQuotaChangeKeepsTheDeviceAndSetsItsSpacesQuota() throws {
        let before = try XCTUnwrap(daemon.devices[SourceID("00:04.0")!])
        var loaded = started
        loaded.devices[1] = try spec("0000:02:00.0=00:04.0,quota=16")
        loaded.mappingQuota = 100
        let result = daemon.applyReload(loaded)
        XCTAssertTrue(daemon.devices[SourceID("00:04.0")!] === before, "not detached: its mappings stay")
        XCTAssertEqual(daemon.bridge.spaces[SourceID("00:04.0")!]?.mappingQuota, 16)
        XCTAssertEqual(daemon.bridge.spaces[SourceID("00:03.0")!]?.mappingQuota, 100, "mapping-quota applies where a device sets none")
        XCTAssertEqual(result.changes, ["mapping-quota: none → 100",
                                        "devices: 00:03.0 mapping quota unlimited → 100",
                                        "devices: 00:04.0 mapping quota 8 → 16"])
        XCTAssertEqual(before.spec.quota, 16)
    }

    func testTheLogLevelAndTheLiveSettingsChange() {
        var loaded = started
        loaded.logLevel = .debug
        loaded.walkBudget = 1 << 20
        loaded.maxClients = 4
        loaded.busyPollMicroseconds = 50
        let result = daemon.applyReload(loaded)
        XCTAssertEqual(level.level, .debug)
        XCTAssertEqual(daemon.bridge.walkBudget, 1 << 20)
        XCTAssertEqual(daemon.config.maxClients, 4)
        XCTAssertEqual(daemon.config.busyPollMicroseconds, 50)
        XCTAssertEqual(result.changes, ["log.level: info → debug", "walk-budget: 4194304 → 1048576",
                                        "control.max-clients: 16 → 4", "event-busy-poll-us: 0 → 50"])
        XCTAssertEqual(result.summary, "reloaded: log.level: info → debug; walk-budget: 4194304 → 1048576; control.max-clients: 16 → 4; event-busy-poll-us: 0 → 50")
    }

    func testTheMetricsTextfileIsWrittenWhereTheReloadSays() throws {
        XCTAssertNil(daemon.metricsTextfile)
        var loaded = started
        loaded.metricsTextfile = directory + "/vm.prom"
        loaded.metricsIntervalSeconds = 30
        let result = daemon.applyReload(loaded)
        XCTAssertEqual(result.changes, ["metrics: no textfile → \(directory)/vm.prom every 30 s"])
        let textfile = try XCTUnwrap(daemon.metricsTextfile)
        XCTAssertEqual(textfile.path, directory + "/vm.prom")
        // Due at once: the next poll round writes it.
        XCTAssertLessThanOrEqual(textfile.due, ContinuousClock.now)
        _ = daemon.applyReload(started)
        XCTAssertNil(daemon.metricsTextfile)
    }

    func testSettingsBuiltAtStartAreReportedAndKept() {
        var loaded = started
        loaded.eventSocket = "/run/elsewhere/event.sock"
        loaded.controlSocket = "/run/elsewhere/control.sock"
        loaded.backend = .vfio
        loaded.stateDirectory = "/var/lib/elsewhere"
        loaded.allowedUIDs = [4242]
        loaded.logLevel = .warning
        let result = daemon.applyReload(loaded)
        XCTAssertEqual(result.needsRestart, ["event-socket", "control.socket", "access.uids", "state-directory", "backend"])
        XCTAssertEqual(daemon.config.eventSocket, started.eventSocket)
        XCTAssertEqual(daemon.config.controlSocket, started.controlSocket)
        XCTAssertEqual(daemon.config.backend, .dryRun)
        XCTAssertEqual(daemon.config.stateDirectory, directory)
        XCTAssertEqual(daemon.config.allowedUIDs, started.allowedUIDs)
        XCTAssertEqual(level.level, .warning, "what can change did")
        XCTAssertTrue(result.summary.hasSuffix("needs a restart (kept as running): event-socket, control.socket, access.uids, state-directory, backend"), result.summary)
    }

    func testRuntimeAttachmentsAreNotTheFiles() throws {
        // `attach` on the control socket: recorded in the state directory.
        _ = try daemon.execute(ControlRequest(id: 1, command: .attach, arguments: ["host": "0000:07:00.0", "guest": "00:07.0"])).0.get()
        var loaded = started
        loaded.devices = [try spec("0000:01:00.0=00:03.0")]
        _ = daemon.applyReload(loaded)
        XCTAssertEqual(attached["00:07.0"], "0000:07:00.0", "a reload detaches only what the file named")

        // The file now names the same device: it stays as it is, recorded.
        loaded.devices.append(try spec("0000:07:00.0=00:07.0"))
        var result = daemon.applyReload(loaded)
        XCTAssertEqual(result.changes, ["devices: 00:07.0 already attached at runtime; left as it is"])
        XCTAssertTrue(daemon.devices[SourceID("00:07.0")!]!.persistent)

        // And when the file stops naming it, it still stays.
        loaded.devices.removeLast()
        result = daemon.applyReload(loaded)
        XCTAssertEqual(result.changes, ["devices: 00:07.0 left attached (a runtime attachment, not the file's)"])
        XCTAssertEqual(attached["00:07.0"], "0000:07:00.0")

        // A file device on a guest a runtime attachment holds with another host fails, and says why.
        loaded.devices.append(try spec("0000:08:00.0=00:07.0"))
        result = daemon.applyReload(loaded)
        XCTAssertEqual(result.failures, ["attaching 0000:08:00.0=00:07.0: 00:07.0 is attached to 0000:07:00.0; detach it first"])
        XCTAssertEqual(attached["00:07.0"], "0000:07:00.0")
    }

    func testAConfigThatDoesNotLoadIsRefusedAndNothingChanges() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "config key \"log.level\" (from c.json, line 3): \"loud\" is not a log level" } }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        daemon = nil
        daemon = try Daemon(config: started, signals: SignalDescriptor(signals: []), logger: logger, logLevel: level,
                            reloadConfig: { throw Broken() })
        try daemon.attachDevice(started.devices[0], persistent: false)
        daemon.reload()
        let result = try XCTUnwrap(daemon.lastReload)
        XCTAssertEqual(result.outcome, .refused)
        XCTAssertEqual(result.error, "config key \"log.level\" (from c.json, line 3): \"loud\" is not a log level")
        XCTAssertEqual(result.summary, "reload refused, the running configuration is kept: config key \"log.level\" (from c.json, line 3): \"loud\" is not a log level")
        XCTAssertEqual(daemon.config, started)
        XCTAssertEqual(attached, ["00:03.0": "0000:01:00.0"])
        XCTAssertEqual(level.level, .info)
        let status = daemon.statusObject()
        XCTAssertEqual(status["last-reload"]?["outcome"], "refused")
        XCTAssertEqual(status["last-reload"]?["error"]?.stringValue, result.error)
    }

    func testTheRestartOnlyKeysAreEveryKeyAReloadLeavesAlone() {
        // Each key of the table is either reloadable or restart-only; a new
        // key must be put in one of the two lists on purpose.
        let reloadable: Set = ["log.level", "devices", "mapping-quota", "walk-budget", "control.max-clients", "event-busy-poll-us",
                                "metrics.textfile", "metrics.interval"]
        XCTAssertEqual(Set(DaemonConfig.keys.map(\.key)), reloadable.union(DaemonConfig.restartOnlyKeys))
        XCTAssertTrue(reloadable.isDisjoint(with: DaemonConfig.restartOnlyKeys))
    }
}
