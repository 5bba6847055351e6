import ArgumentParser
@testable import vtdbridgectl
import XCTest

/// --name, --socket and --json before or after the command's name.
final class GlobalOptionsTests: XCTestCase {
    let commands: Set = ["status", "mappings", "walk"]

    func testOptionsBeforeTheCommandMoveAfterIt() {
        XCTAssertEqual(GlobalOptions.normalize(["--name", "vm0", "status"], commands: commands), .arguments(["status", "--name", "vm0"]))
        XCTAssertEqual(GlobalOptions.normalize(["--json", "--socket=/s", "mappings", "00:03.0"], commands: commands),
                       .arguments(["mappings", "--json", "--socket=/s", "00:03.0"]))
        XCTAssertEqual(GlobalOptions.normalize(["--socket", "/s", "--json", "status", "--name", "x"], commands: commands),
                       .arguments(["status", "--socket", "/s", "--json", "--name", "x"]))
    }

    func testEverythingElseIsLeftAlone() {
        for args in [["status", "--name", "vm0"], [], ["--help"], ["--version"], ["--generate-completion-script", "bash"],
                     ["mappings", "--json", "00:03.0"], ["--quota", "5", "status"]] {
            XCTAssertEqual(GlobalOptions.normalize(args, commands: commands), .arguments(args), "\(args)")
        }
        XCTAssertEqual(GlobalOptions.normalize(["--name", "vm0", "--help"], commands: commands), .arguments(["--help"]))
    }

    func testOptionsWithoutACommandAreAClearError() {
        guard case let .misplaced(message) = GlobalOptions.normalize(["--name", "vm0"], commands: commands) else {
            return XCTFail("accepted")
        }
        XCTAssertTrue(message.contains("--name vm0 must be followed by a command"), message)
        XCTAssertTrue(message.contains("found nothing"), message)
        // The value is taken as the value: a command name after --name is its value.
        guard case let .misplaced(other) = GlobalOptions.normalize(["--name", "status"], commands: commands) else {
            return XCTFail("accepted")
        }
        XCTAssertTrue(other.contains("found nothing"), other)
        guard case let .misplaced(unknown) = GlobalOptions.normalize(["--json", "stauts"], commands: commands) else {
            return XCTFail("accepted")
        }
        XCTAssertTrue(unknown.contains("found 'stauts'"), unknown)
    }

    /// Both places give the command the same options, through the real parser.
    func testBothPlacesParseToTheSameCommand() throws {
        for args in [["--name", "vm0", "--json", "status"], ["status", "--name", "vm0", "--json"], ["--json", "status", "--name", "vm0"]] {
            guard case let .arguments(normalized) = VTdBridgeCtl.parserArguments(args) else { return XCTFail("\(args)") }
            let command = try VTdBridgeCtl.parseAsRoot(normalized)
            let status = try XCTUnwrap(command as? Status, "\(args)")
            XCTAssertEqual(status.options.name, "vm0")
            XCTAssertTrue(status.options.json)
            XCTAssertEqual(status.options.path, "/run/vtd-bridge/vm0/control.sock")
            XCTAssertEqual(status.options.instance, "vm0")
        }
        guard case let .arguments(normalized) = VTdBridgeCtl.parserArguments(["--socket", "/tmp/c.sock", "mappings", "00:03.0"]) else {
            return XCTFail("not moved")
        }
        let mappings = try XCTUnwrap(try VTdBridgeCtl.parseAsRoot(normalized) as? Mappings)
        XCTAssertEqual(mappings.options.path, "/tmp/c.sock")
        XCTAssertNil(mappings.options.instance, "only a socket: the hint names the path")
        XCTAssertEqual(mappings.guest, "00:03.0")
    }

    func testEveryControlCommandIsMovedTo() {
        XCTAssertEqual(VTdBridgeCtl.commandNames, ["status", "mappings", "attach", "detach", "replay", "metrics", "log-level", "shutdown", "walk"])
    }
}
