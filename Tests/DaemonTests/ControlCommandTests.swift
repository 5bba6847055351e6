import Glibc
import Logging
import UnixIO
import Wire
import XCTest
@testable import Daemon

/// The control commands run in-process against a dry-run daemon: every
/// command of `ControlCommand` reaches a handler, and the daemon's refusals
/// carry the codes of PROTOCOL.md §2.2.
final class ControlCommandTests: XCTestCase {
    private var directory = ""
    private var daemon: Daemon!

    /// The log level the executable would provide; here a plain variable.
    private final class TestLogLevel: LogLevelControl, @unchecked Sendable {
        var level: Logger.Level = .info
        func setLevel(_ level: Logger.Level) { self.level = level }
    }

    override func setUpWithError() throws {
        var template = Array("/tmp/vtdbridge-control-XXXXXX".utf8CString)
        _ = try XCTUnwrap(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }, "mkdtemp failed")
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var config = DaemonConfig(name: "test")
        config.backend = .dryRun
        config.stateDirectory = directory
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        daemon = try Daemon(config: config, signals: SignalDescriptor(signals: []), logger: logger, logLevel: TestLogLevel())
    }

    override func tearDown() {
        daemon = nil
        unlink(directory + "/attachments.json")
        rmdir(directory)
    }

    private func run(_ command: ControlCommand, _ arguments: [String: JSONValue] = [:]) -> Result<JSONValue, ControlError> {
        let (result, fds) = daemon.execute(ControlRequest(id: 1, command: command, arguments: arguments))
        XCTAssertEqual(fds, [], "only attach with return-fd passes a descriptor, and dry-run has none")
        return result
    }

    private func code(_ command: ControlCommand, _ arguments: [String: JSONValue] = [:]) -> String? {
        guard case let .failure(error) = run(command, arguments) else { return nil }
        return error.code.rawValue
    }

    /// Each command, with arguments it accepts, gets its own answer. The
    /// switch below has no default either, so a new command needs a line.
    func testEveryCommandReachesItsHandler() throws {
        _ = try run(.attach, ["host": "0000:01:00.0", "guest": "00:03.0"]).get()
        for command in ControlCommand.allCases {
            let result: Result<JSONValue, ControlError>
            switch command {
            case .attach: result = run(.attach, ["host": "0000:02:00.0", "guest": "00:04.0"])
            case .detach: result = run(.detach, ["guest": "00:04.0"])
            case .replay: result = run(.replay, ["all": true])
            case .status: result = run(.status)
            case .mappings: result = run(.mappings, ["guest": "00:03.0"])
            case .metrics: result = run(.metrics)
            case .logLevel: result = run(.logLevel, ["level": "debug"])
            case .shutdown: result = run(.shutdown)
            }
            switch (command, result) {
            case (.attach, .success(let value)): XCTAssertEqual(value["guest"], "00:04.0")
            case (.detach, .success(let value)): XCTAssertEqual(value, ["guest": "00:04.0", "unmapped": 0])
            case (.replay, .failure(let error)): XCTAssertEqual(error, .noVMM, "nothing to walk before a VMM sent its RAM")
            case (.status, .success(let value)): XCTAssertEqual(value["devices"]?[0]?["guest"], "00:03.0")
            case (.mappings, .success(let value)):
                XCTAssertEqual(value, ["device": "00:03.0", "domain": .null, "levels": .null, "mode": "not-present", "mappings": [], "faults": []])
            case (.metrics, .success(let value)): XCTAssertEqual(value, ["text": ""])
            case (.logLevel, .success(let value)): XCTAssertEqual(value, ["level": "debug"])
            case (.shutdown, .success(let value)): XCTAssertEqual(value, [:])
            default: XCTFail("\(command): unexpected \(result)")
            }
        }
        // After shutdown only status is served.
        XCTAssertEqual(code(.detach, ["guest": "00:03.0"]), "shutting-down")
        XCTAssertEqual(run(.detach, ["guest": "00:03.0"]), .failure(.shuttingDown))
        XCTAssertNotNil(try? run(.status).get())
    }

    func testRefusalsCarryTheProtocolCodes() throws {
        _ = try run(.attach, ["host": "0000:01:00.0", "guest": "00:03.0"]).get()
        XCTAssertEqual(run(.detach, ["guest": "00:09.0"]), .failure(.notAttached(guest: "00:09.0")))
        XCTAssertEqual(run(.mappings, ["guest": "00:09.0"]), .failure(.notAttached(guest: "00:09.0")))
        XCTAssertEqual(run(.replay, ["guest": "00:09.0"]), .failure(.notAttached(guest: "00:09.0")),
                       "an unknown guest is named before the missing VMM")
        XCTAssertEqual(run(.replay, ["guest": "00:03.0"]), .failure(.noVMM))
        XCTAssertEqual(run(.attach, ["host": "0000:05:00.0", "guest": "00:03.0"]),
                       .failure(.alreadyAttached(guest: "00:03.0", to: "0000:01:00.0")))
        XCTAssertEqual(run(.attach, ["host": "0000:01:00.0", "guest": "00:05.0"]),
                       .failure(.alreadyAttached(host: "0000:01:00.0", as: "00:03.0")))
        XCTAssertEqual(code(.attach, ["host": "0000:01:00.0"]), "missing-argument")
        XCTAssertEqual(code(.attach, ["host": "0000:06:00.0", "guest": "00:06.0", "return-fd": true]), "invalid-argument")
        XCTAssertEqual(code(.replay, ["guest": "00:03.0", "all": true]), "invalid-argument")
        XCTAssertEqual(code(.status, ["verbose": true]), "invalid-argument")
        XCTAssertEqual(code(.logLevel, ["level": "loud"]), "invalid-argument")
    }
}
