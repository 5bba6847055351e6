import Foundation
import XCTest
import VTd
@testable import Daemon

#if canImport(Glibc)
import Glibc
#endif

/// Writes config files into a private temporary directory, removed afterwards.
final class ConfigScratch {
    let directory: String

    init() {
        var template = Array("/tmp/vtdbridge-config-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    deinit {
        _ = try? FileManager.default.removeItem(atPath: directory)
    }

    /// Writes `text` to a new file and returns its path.
    func write(_ text: String, name: String = "vm.json") -> String {
        let path = directory + "/" + name
        let written = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        precondition(written, "cannot write \(path)")
        return path
    }
}

/// Thrown by `configLoadError` when the config loads although it should not.
struct ConfigUnexpectedlyLoaded: Error, CustomStringConvertible {
    var config: DaemonConfig
    var description: String { "expected a config error, but the config loaded: \(config)" }
}

/// Loads and returns the ConfigError; throws (failing the test) if loading succeeds.
func configLoadError(
    file: String? = nil, environment: [String: String] = [:], overrides: [String: String] = [:]
) throws -> ConfigError {
    let config: DaemonConfig
    do {
        config = try DaemonConfig.load(file: file, environment: environment, overrides: overrides)
    } catch {
        return error
    }
    throw ConfigUnexpectedlyLoaded(config: config)
}

final class ConfigLoadTests: XCTestCase {
    let scratch = ConfigScratch()

    // MARK: - Defaults

    func testDefaultsWithoutFileEnvironmentOrFlags() throws {
        let config = try DaemonConfig.load(file: nil, environment: [:], overrides: [:])
        XCTAssertEqual(config.name, "default")
        XCTAssertEqual(config.eventSocket, "/run/vtd-bridge/default/event.sock")
        XCTAssertEqual(config.controlSocket, "/run/vtd-bridge/default/control.sock")
        XCTAssertNil(config.controlGroup)
        let expectedUIDs: [uid_t] = getuid() == 0 ? [0] : [0, getuid()]
        XCTAssertEqual(config.allowedUIDs, expectedUIDs)
        XCTAssertEqual(config.allowedGIDs, [])
        XCTAssertEqual(config.stateDirectory, "/var/lib/vtd-bridge/default")
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertEqual(config.backend, .vfio)
        XCTAssertEqual(config.vfioDeviceDirectory, "/dev/vfio")
        XCTAssertEqual(config.sysfsRoot, "/sys")
        XCTAssertEqual(config.devices, [])
        XCTAssertNil(config.mappingQuota)
        XCTAssertEqual(config.maxClients, 16)
        XCTAssertEqual(config, DaemonConfig(name: "default"))
    }

    func testDefaultPathsFollowTheName() throws {
        let config = try DaemonConfig.load(file: nil, environment: [:], overrides: ["name": "vm7"])
        XCTAssertEqual(config.name, "vm7")
        XCTAssertEqual(config.eventSocket, "/run/vtd-bridge/vm7/event.sock")
        XCTAssertEqual(config.controlSocket, "/run/vtd-bridge/vm7/control.sock")
        XCTAssertEqual(config.stateDirectory, "/var/lib/vtd-bridge/vm7")
    }

    func testAllowedGIDsDefaultToTheControlGroup() throws {
        let config = try DaemonConfig.load(file: nil, environment: [:], overrides: ["control.group": "root"])
        XCTAssertEqual(config.controlGroup, 0)
        XCTAssertEqual(config.allowedGIDs, [0])
    }

    func testEmptyFileObjectGivesTheDefaults() throws {
        let path = scratch.write("{}")
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(config, DaemonConfig())
    }

    func testNullInTheFileMeansNotSet() throws {
        let path = scratch.write(#"{"log": {"level": null}, "mapping-quota": null}"#)
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertNil(config.mappingQuota)
    }

    // MARK: - File values

    static let fullFile = """
    {
      "name": "vm3",
      "event-socket": "/run/vm3/ev.sock",
      "control": { "socket": "/run/vm3/ctl.sock", "group": 36, "max-clients": 4 },
      "access": { "uids": ["root", "1000"], "gids": [36, 0, 36] },
      "state-directory": "/srv/vtd/vm3",
      "log": { "level": "debug" },
      "backend": "dry-run",
      "vfio": { "device-directory": "/tmp/fake-vfio", "sysfs": "/tmp/fake-sys" },
      "devices": ["0000:01:00.0=00:03.0", "02:00.1=00:04.0,quota=4096", "group:12=00:05.0"],
      "mapping-quota": 1024
    }
    """

    func testEveryKeyFromTheFile() throws {
        let path = scratch.write(Self.fullFile)
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(config.name, "vm3")
        XCTAssertEqual(config.eventSocket, "/run/vm3/ev.sock")
        XCTAssertEqual(config.controlSocket, "/run/vm3/ctl.sock")
        XCTAssertEqual(config.controlGroup, 36)
        XCTAssertEqual(config.maxClients, 4)
        XCTAssertEqual(config.allowedUIDs, [0, 1000])
        XCTAssertEqual(config.allowedGIDs, [36, 0], "duplicates dropped, order kept")
        XCTAssertEqual(config.stateDirectory, "/srv/vtd/vm3")
        XCTAssertEqual(config.logLevel, .debug)
        XCTAssertEqual(config.backend, .dryRun)
        XCTAssertEqual(config.vfioDeviceDirectory, "/tmp/fake-vfio")
        XCTAssertEqual(config.sysfsRoot, "/tmp/fake-sys")
        XCTAssertEqual(config.devices, [
            DeviceSpec(host: .pci("0000:01:00.0"), guest: SourceID(bus: 0, device: 3, function: 0)!),
            DeviceSpec(host: .pci("0000:02:00.1"), guest: SourceID(bus: 0, device: 4, function: 0)!, quota: 4096),
            DeviceSpec(host: .group(12), guest: SourceID(bus: 0, device: 5, function: 0)!),
        ])
        XCTAssertEqual(config.mappingQuota, 1024)
        XCTAssertEqual(config.quota(for: config.devices[0]), 1024, "the daemon-wide quota applies")
        XCTAssertEqual(config.quota(for: config.devices[1]), 4096, "the device's own quota wins")
    }

    func testDottedKeysMayBeWrittenFlat() throws {
        let path = scratch.write(#"{"log.level": "error", "control.max-clients": 2}"#)
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(config.logLevel, .error)
        XCTAssertEqual(config.maxClients, 2)
    }

    func testMappingQuotaZeroMeansNoLimit() throws {
        let path = scratch.write(#"{"mapping-quota": 0}"#)
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertNil(config.mappingQuota)
    }

    /// The shipped example must load; its host-specific group ("kvm") is
    /// replaced through flags, as this test machine may not have it.
    func testTheShippedExampleLoads() throws {
        let example = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/vtdbridged.json").path
        let config = try DaemonConfig.load(
            file: example, environment: [:], overrides: ["control.group": "0", "access.gids": "0"])
        XCTAssertEqual(config.name, "vm0")
        XCTAssertEqual(config.controlSocket, "/run/vtd-bridge/vm0/control.sock")
        XCTAssertEqual(config.eventSocket, "/run/vtd-bridge/vm0/event.sock")
        XCTAssertEqual(config.stateDirectory, "/var/lib/vtd-bridge/vm0")
        XCTAssertEqual(config.devices.first, DeviceSpec(host: .pci("0000:01:00.0"), guest: SourceID("00:03.0")!))
        XCTAssertEqual(config.backend, .vfio)
        XCTAssertEqual(config.walkBudget, WalkBudget.defaultEntries)
        // Every key appears in the example.
        let text = try String(contentsOfFile: example, encoding: .utf8)
        for info in DaemonConfig.keys {
            let leaf = String(info.key.split(separator: ".").last!)
            XCTAssertTrue(text.contains("\"\(leaf)\""), "the example lacks \(info.key)")
        }
    }

    // MARK: - Precedence

    func testEnvironmentOverridesTheFile() throws {
        let path = scratch.write(#"{"log": {"level": "debug"}, "backend": "dry-run", "devices": ["01:00.0=00:03.0"]}"#)
        let config = try DaemonConfig.load(file: path, environment: [
            "VTDBRIDGE_LOG_LEVEL": "warning",
            "VTDBRIDGE_DEVICES": "02:00.0=00:05.0,quota=8 group:3=00:06.0",
        ], overrides: [:])
        XCTAssertEqual(config.logLevel, .warning)
        XCTAssertEqual(config.backend, .dryRun, "keys not in the environment still come from the file")
        XCTAssertEqual(config.devices, [
            DeviceSpec(host: .pci("0000:02:00.0"), guest: SourceID("00:05.0")!, quota: 8),
            DeviceSpec(host: .group(3), guest: SourceID("00:06.0")!),
        ], "a list from a higher source replaces the file's list whole")
    }

    func testFlagsOverrideTheEnvironment() throws {
        let path = scratch.write(#"{"log": {"level": "debug"}, "name": "from-file"}"#)
        let config = try DaemonConfig.load(
            file: path,
            environment: ["VTDBRIDGE_LOG_LEVEL": "warning", "VTDBRIDGE_NAME": "from-env"],
            overrides: ["log.level": "critical"])
        XCTAssertEqual(config.logLevel, .critical)
        XCTAssertEqual(config.name, "from-env")
        XCTAssertEqual(config.controlSocket, "/run/vtd-bridge/from-env/control.sock")
    }

    func testEveryKeyHasAnEnvironmentVariable() throws {
        let environment = [
            "VTDBRIDGE_NAME": "envvm",
            "VTDBRIDGE_EVENT_SOCKET": "/e/ev.sock",
            "VTDBRIDGE_CONTROL_SOCKET": "/e/ctl.sock",
            "VTDBRIDGE_CONTROL_GROUP": "0",
            "VTDBRIDGE_CONTROL_MAX_CLIENTS": "3",
            "VTDBRIDGE_ACCESS_UIDS": "0,5 7",
            "VTDBRIDGE_ACCESS_GIDS": "root",
            "VTDBRIDGE_STATE_DIRECTORY": "/e/state",
            "VTDBRIDGE_LOG_LEVEL": "TRACE",
            "VTDBRIDGE_BACKEND": "dry-run",
            "VTDBRIDGE_VFIO_DEVICE_DIRECTORY": "/e/vfio",
            "VTDBRIDGE_VFIO_SYSFS": "/e/sys",
            "VTDBRIDGE_DEVICES": "01:00.0=00:03.0",
            "VTDBRIDGE_MAPPING_QUOTA": "77",
            "VTDBRIDGE_WALK_BUDGET": "65536",
            "VTDBRIDGE_EVENT_BUSY_POLL_US": "250",
            "VTDBRIDGE_METRICS_TEXTFILE": "/e/node-exporter/vm.prom",
            "VTDBRIDGE_METRICS_INTERVAL": "5",
        ]
        XCTAssertEqual(Set(environment.keys), Set(DaemonConfig.keys.map(\.environmentVariable)),
                       "this test covers every key")
        let config = try DaemonConfig.load(file: nil, environment: environment, overrides: [:])
        XCTAssertEqual(config.name, "envvm")
        XCTAssertEqual(config.eventSocket, "/e/ev.sock")
        XCTAssertEqual(config.controlSocket, "/e/ctl.sock")
        XCTAssertEqual(config.controlGroup, 0)
        XCTAssertEqual(config.maxClients, 3)
        XCTAssertEqual(config.allowedUIDs, [0, 5, 7])
        XCTAssertEqual(config.allowedGIDs, [0])
        XCTAssertEqual(config.stateDirectory, "/e/state")
        XCTAssertEqual(config.logLevel, .trace)
        XCTAssertEqual(config.backend, .dryRun)
        XCTAssertEqual(config.vfioDeviceDirectory, "/e/vfio")
        XCTAssertEqual(config.sysfsRoot, "/e/sys")
        XCTAssertEqual(config.devices, [DeviceSpec(host: .pci("0000:01:00.0"), guest: SourceID("00:03.0")!)])
        XCTAssertEqual(config.mappingQuota, 77)
        XCTAssertEqual(config.walkBudget, 65536)
        XCTAssertEqual(config.busyPollMicroseconds, 250)
        XCTAssertEqual(config.metricsTextfile, "/e/node-exporter/vm.prom")
        XCTAssertEqual(config.metricsIntervalSeconds, 5)
    }

    func testMetricsTextfileIsOffByDefaultAndChecked() throws {
        let defaults = try DaemonConfig.load(file: nil, environment: [:], overrides: [:])
        XCTAssertNil(defaults.metricsTextfile)
        XCTAssertEqual(defaults.metricsIntervalSeconds, 15)
        let path = scratch.write(#"{"metrics": {"textfile": "/var/lib/prometheus/node-exporter/vm0.prom", "interval": 60}}"#)
        let set = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(set.metricsTextfile, "/var/lib/prometheus/node-exporter/vm0.prom")
        XCTAssertEqual(set.metricsIntervalSeconds, 60)

        let notProm = try configLoadError(environment: ["VTDBRIDGE_METRICS_TEXTFILE": "/var/lib/prometheus/vm0.txt"])
        XCTAssertEqual(notProm.key, "metrics.textfile")
        XCTAssertTrue(notProm.message.contains("\"/var/lib/prometheus/vm0.txt\" does not end in a file name with .prom"), notProm.message)
        let bare = try configLoadError(environment: ["VTDBRIDGE_METRICS_TEXTFILE": "/tmp/.prom"])
        XCTAssertEqual(bare.key, "metrics.textfile", bare.message)
        let relative = try configLoadError(environment: ["VTDBRIDGE_METRICS_TEXTFILE": "vm0.prom"])
        XCTAssertTrue(relative.message.contains("relative path"), relative.message)
        for bad in ["0", "3601"] {
            let error = try configLoadError(environment: ["VTDBRIDGE_METRICS_INTERVAL": bad])
            XCTAssertEqual(error.key, "metrics.interval")
            XCTAssertTrue(error.message.contains("\(bad) is out of range; expected a whole number of seconds from 1 to 3600"), error.message)
        }
    }

    func testWalkBudgetDefaultsAndItsFloor() throws {
        let defaults = try DaemonConfig.load(file: nil, environment: [:], overrides: [:])
        XCTAssertEqual(defaults.walkBudget, WalkBudget.defaultEntries)
        XCTAssertEqual(defaults.walkBudget, 4_194_304)
        let path = scratch.write(#"{"walk-budget": 65536}"#)
        let floor = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(floor.walkBudget, 65536)
        let error = try configLoadError(environment: ["VTDBRIDGE_WALK_BUDGET": "65535"])
        XCTAssertEqual(error.key, "walk-budget")
        XCTAssertTrue(error.message.contains("65535 is too small") && error.message.contains("≥ 65536"), error.message)
    }

    func testBusyPollOutOfRangeIsRefusedWithTheRange() throws {
        do {
            _ = try DaemonConfig.load(file: nil, environment: ["VTDBRIDGE_EVENT_BUSY_POLL_US": "20000"], overrides: [:])
            XCTFail("20000 µs accepted")
        } catch {
            XCTAssertEqual(error.key, "event-busy-poll-us")
            XCTAssertTrue(error.message.contains("0 to 10000"), error.message)
        }
    }

    func testEnvironmentVariableNamesFollowTheMappingRule() {
        XCTAssertEqual(DaemonConfig.environmentVariable(forKey: "log.level"), "VTDBRIDGE_LOG_LEVEL")
        XCTAssertEqual(DaemonConfig.environmentVariable(forKey: "control.group"), "VTDBRIDGE_CONTROL_GROUP")
        XCTAssertEqual(DaemonConfig.environmentVariable(forKey: "vfio.device-directory"), "VTDBRIDGE_VFIO_DEVICE_DIRECTORY")
        let names = DaemonConfig.keys.map(\.environmentVariable)
        XCTAssertEqual(Set(names).count, names.count, "no two keys share a variable")
        XCTAssertEqual(DaemonConfig.keyInfo("devices")?.flag, "--device")
        XCTAssertEqual(DaemonConfig.keyInfo("log.level")?.flag, "--log-level")
    }

    func testRepeatedFlagValuesAndOtherVariablesAreIgnored() throws {
        let config = try DaemonConfig.load(
            file: nil,
            environment: ["PATH": "/usr/bin", "HOME": "/root", "VTDBRIDGEX": "not ours"],
            overrides: ["devices": DaemonConfig.overrideValue(list: ["01:00.0=00:03.0,quota=9", "group:4=00:04.0"])])
        XCTAssertEqual(config.devices.count, 2)
        XCTAssertEqual(config.devices[0].quota, 9)
        XCTAssertEqual(config.devices[1].host, .group(4))
    }

    func testEmptyListFromTheEnvironmentClearsTheFileList() throws {
        let path = scratch.write(#"{"devices": ["01:00.0=00:03.0"]}"#)
        let config = try DaemonConfig.load(file: path, environment: ["VTDBRIDGE_DEVICES": ""], overrides: [:])
        XCTAssertEqual(config.devices, [])
    }

    func testLoaderTouchesNoDevice() throws {
        // Paths that do not exist are accepted as they are: the loader only
        // reads the config file and the user/group databases.
        let config = try DaemonConfig.load(
            file: nil, environment: [:],
            overrides: ["vfio.device-directory": "/nonexistent/vfio", "vfio.sysfs": "/nonexistent/sys",
                        "devices": "0000:ff:1f.7=ff:1f.7"])
        XCTAssertEqual(config.vfioDeviceDirectory, "/nonexistent/vfio")
        XCTAssertEqual(config.devices.first?.host, .pci("0000:ff:1f.7"))
    }
}
