import Foundation
import XCTest
@testable import Daemon

/// Each bad value yields one error naming the key, the source (file and
/// line, environment variable, or flag), what is wrong and what is expected.
final class ConfigErrorTests: XCTestCase {
    let scratch = ConfigScratch()

    // MARK: - log.level from each source

    func testBadLogLevelFromTheEnvironment() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_LOG_LEVEL": "loud"])
        XCTAssertEqual(error.key, "log.level")
        XCTAssertEqual(error.source, "VTDBRIDGE_LOG_LEVEL")
        XCTAssertEqual(error.description,
                       #"config key "log.level" (from VTDBRIDGE_LOG_LEVEL): "loud" is not a log level; expected one of trace, debug, info, notice, warning, error, critical"#)
    }

    func testBadLogLevelFromTheFileNamesFileAndLine() throws {
        let path = scratch.write("{\n  \"name\": \"vm0\",\n  \"log\": {\n    \"level\": \"loud\"\n  }\n}\n")
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "log.level")
        XCTAssertEqual(error.source, "\(path), line 4")
        XCTAssertEqual(error.description,
                       "config key \"log.level\" (from \(path), line 4): \"loud\" is not a log level; expected one of trace, debug, info, notice, warning, error, critical")
    }

    func testBadLogLevelFromAFlag() throws {
        let error = try configLoadError(overrides: ["log.level": "chatty"])
        XCTAssertEqual(error.description,
                       #"config key "log.level" (from --log-level): "chatty" is not a log level; expected one of trace, debug, info, notice, warning, error, critical"#)
    }

    func testAFlagHidesABadEnvironmentValue() throws {
        // Only the winning source is read: a bad value below it is not an error.
        let config = try DaemonConfig.load(file: nil, environment: ["VTDBRIDGE_LOG_LEVEL": "loud"],
                                                 overrides: ["log.level": "error"])
        XCTAssertEqual(config.logLevel, .error)
    }

    // MARK: - Paths

    func testRelativeStateDirectoryFromTheFile() throws {
        let path = scratch.write(#"{"state-directory": "var/lib/vtd"}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "state-directory")
        XCTAssertEqual(error.source, "\(path), line 1")
        XCTAssertTrue(error.message.hasPrefix(#""var/lib/vtd" is a relative path; expected an absolute path"#), error.message)
    }

    func testRelativeSocketFromTheEnvironment() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_CONTROL_SOCKET": "ctl.sock"])
        XCTAssertEqual(error.key, "control.socket")
        XCTAssertEqual(error.source, "VTDBRIDGE_CONTROL_SOCKET")
        XCTAssertTrue(error.description.contains(#""ctl.sock" is a relative path; expected an absolute path of at most 107 bytes"#), error.description)
    }

    func testRelativeEventSocketFromAFlag() throws {
        let error = try configLoadError(overrides: ["event-socket": "./ev.sock"])
        XCTAssertEqual(error.key, "event-socket")
        XCTAssertEqual(error.source, "--event-socket")
    }

    func testSocketPathLongerThanSunPath() throws {
        let long = "/run/" + String(repeating: "x", count: 103)  // 108 bytes
        let error = try configLoadError(overrides: ["event-socket": long])
        XCTAssertEqual(error.key, "event-socket")
        XCTAssertTrue(error.message.contains("is 108 bytes; expected an absolute path of at most 107 bytes"), error.message)
        // 107 bytes is accepted.
        let fits = "/run/" + String(repeating: "x", count: 102)
        let config = try DaemonConfig.load(file: nil, environment: [:], overrides: ["event-socket": fits])
        XCTAssertEqual(config.eventSocket, fits)
    }

    func testSameSocketTwice() throws {
        let error = try configLoadError(
            overrides: ["event-socket": "/run/x.sock", "control.socket": "/run/x.sock"])
        XCTAssertEqual(error.key, "control.socket")
        XCTAssertEqual(error.source, "--control-socket")
        XCTAssertTrue(error.message.contains("also the event-socket path"), error.message)
    }

    // MARK: - Unknown keys

    func testUnknownKeyInTheFileSuggestsTheClosest() throws {
        let path = scratch.write("{\n  \"log\": {\n    \"levle\": \"debug\"\n  }\n}")
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "log.levle")
        XCTAssertEqual(error.source, "\(path), line 3")
        XCTAssertTrue(error.message.hasPrefix(#"unknown key; did you mean "log.level"?"#), error.message)
        XCTAssertTrue(error.description.hasPrefix("config key \"log.levle\" (from \(path), line 3): unknown key"), error.description)
    }

    func testUnknownTopLevelKeysSuggestSectionsAndLeaves() throws {
        let misspeltSection = scratch.write(#"{"contrl": {"socket": "/run/c.sock"}}"#, name: "a.json")
        var error = try configLoadError(file: misspeltSection)
        XCTAssertEqual(error.key, "contrl")
        XCTAssertTrue(error.message.contains(#"did you mean "control"?"#), error.message)

        let leafAtTop = scratch.write(#"{"socket": "/run/c.sock"}"#, name: "b.json")
        error = try configLoadError(file: leafAtTop)
        XCTAssertEqual(error.key, "socket")
        XCTAssertTrue(error.message.contains(#"did you mean "control.socket"?"#), error.message)

        let typo = scratch.write(#"{"mapping_quota": 5}"#, name: "c.json")
        error = try configLoadError(file: typo)
        XCTAssertTrue(error.message.contains(#"did you mean "mapping-quota"?"#), error.message)
    }

    func testSectionGivenAsAScalar() throws {
        let path = scratch.write(#"{"control": "/run/c.sock"}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "control")
        XCTAssertTrue(error.message.contains("expected an object with the keys socket, group, max-clients"), error.message)
    }

    func testUnknownEnvironmentVariable() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_LOG_LEVL": "debug"])
        XCTAssertEqual(error.key, "VTDBRIDGE_LOG_LEVL")
        XCTAssertEqual(error.source, "environment")
        XCTAssertTrue(error.message.contains(#"did you mean VTDBRIDGE_LOG_LEVEL (key "log.level")?"#), error.message)
    }

    func testUnknownOverrideKey() throws {
        let error = try configLoadError(overrides: ["log-level": "debug"])
        XCTAssertEqual(error.key, "log-level")
        XCTAssertEqual(error.source, "command line")
        XCTAssertTrue(error.message.contains(#"did you mean "log.level"?"#), error.message)
    }

    func testKeyGivenFlatAndNested() throws {
        let path = scratch.write("{\"log\": {\"level\": \"info\"},\n\"log.level\": \"debug\"}")
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "log.level")
        XCTAssertEqual(error.source, "\(path), line 2")
        XCTAssertTrue(error.message.contains("given twice (also on line 1)"), error.message)
    }

    // MARK: - Devices

    func testBadDeviceSpecNamesTheEntry() throws {
        let path = scratch.write(#"{"devices": ["01:00.0=00:03.0", "01:00.1=00:04.0,quota=lots"]}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "devices")
        XCTAssertEqual(error.source, "\(path), line 1")
        XCTAssertTrue(error.message.hasPrefix(#"entry 2 "01:00.1=00:04.0,quota=lots": quota "lots" is not a positive whole number"#), error.message)
    }

    func testBadDeviceSpecFromAFlag() throws {
        let error = try configLoadError(overrides: ["devices": "01:00.0"])
        XCTAssertEqual(error.source, "--device")
        XCTAssertTrue(error.message.contains(#"no "=" between host and guest; expected HOST=GUEST[,quota=N]"#), error.message)
    }

    func testDuplicateGuestSourceID() throws {
        let path = scratch.write(#"{"devices": ["01:00.0=00:03.0", "02:00.0=0000:00:03.0"]}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "devices")
        XCTAssertTrue(error.message.contains("entry 2 \"02:00.0=0000:00:03.0\" uses guest source-id 00:03.0, already used by entry 1"), error.message)
    }

    func testDuplicateHostDevice() throws {
        let error = try configLoadError(
            environment: ["VTDBRIDGE_DEVICES": "01:00.0=00:03.0 0000:01:00.0=00:04.0"])
        XCTAssertEqual(error.source, "VTDBRIDGE_DEVICES")
        XCTAssertTrue(error.message.contains("attaches host 0000:01:00.0, already attached by entry 1"), error.message)
    }

    // MARK: - The file itself

    func testMalformedJSONGivesLineAndColumn() throws {
        let path = scratch.write("{\n  \"name\": \"vm0\"\n  \"backend\": \"vfio\"\n}")
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "")
        XCTAssertEqual(error.source, path)
        XCTAssertEqual(error.description,
                       "config file \(path): not valid JSON at line 3, column 3: expected \",\" or \"}\" after the value of \"name\", found '\"'")
    }

    func testTrailingCommaAndRepeatedKeyAreRejected() throws {
        let trailing = scratch.write("{\"name\": \"vm0\",\n}", name: "a.json")
        var error = try configLoadError(file: trailing)
        XCTAssertTrue(error.message.hasPrefix("not valid JSON at line 2, column 1: trailing comma"), error.message)

        let repeated = scratch.write("{\"name\": \"a\",\n \"name\": \"b\"}", name: "b.json")
        error = try configLoadError(file: repeated)
        XCTAssertTrue(error.message.contains("line 2, column 2: key \"name\" appears twice"), error.message)
    }

    func testUnquotedStringGetsAHint() throws {
        let path = scratch.write("{\n  \"backend\": vfio\n}")
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.message, "not valid JSON at line 2, column 14: expected a value (object, array, string, number, true, false or null), found 'v'; strings need double quotes")
    }

    func testTopLevelMustBeAnObject() throws {
        let path = scratch.write(#"["vm0"]"#)
        let error = try configLoadError(file: path)
        XCTAssertTrue(error.message.contains("the top level is an array; expected a JSON object"), error.message)
    }

    func testEmptyFile() throws {
        let path = scratch.write("")
        let error = try configLoadError(file: path)
        XCTAssertTrue(error.message.contains("the file is empty"), error.message)
    }

    func testMissingExplicitFile() throws {
        let path = scratch.directory + "/absent.json"
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "")
        XCTAssertEqual(error.source, path)
        XCTAssertTrue(error.description.hasPrefix("config file \(path): no such file; expected an existing JSON config file"), error.description)
    }

    func testDirectoryInsteadOfFile() throws {
        let error = try configLoadError(file: scratch.directory)
        XCTAssertTrue(error.message.contains("is a directory"), error.message)
    }

    // MARK: - Kinds and ranges

    func testWrongJSONKindsNameKeyAndLine() throws {
        let string = scratch.write("{\n\"mapping-quota\": \"many\"}", name: "a.json")
        var error = try configLoadError(file: string)
        XCTAssertEqual(error.key, "mapping-quota")
        XCTAssertEqual(error.source, "\(string), line 2")
        XCTAssertEqual(error.message, #"is the string "many"; expected a whole number"#)

        let boolean = scratch.write(#"{"control": {"max-clients": true}}"#, name: "b.json")
        error = try configLoadError(file: boolean)
        XCTAssertEqual(error.key, "control.max-clients")
        XCTAssertEqual(error.message, "is true; expected a whole number")

        let fraction = scratch.write(#"{"mapping-quota": 1.5}"#, name: "c.json")
        error = try configLoadError(file: fraction)
        XCTAssertEqual(error.message, "is the number 1.5; expected a whole number")

        let huge = scratch.write(#"{"mapping-quota": 99999999999999999999}"#, name: "e.json")
        error = try configLoadError(file: huge)
        XCTAssertEqual(error.message, "99999999999999999999 is too large; expected a whole number within 64 bits")

        let notList = scratch.write(#"{"devices": "01:00.0=00:03.0"}"#, name: "d.json")
        error = try configLoadError(file: notList)
        XCTAssertEqual(error.key, "devices")
        XCTAssertTrue(error.message.hasSuffix("expected an array of strings"), error.message)
    }

    func testMixedUIDListIsExplained() throws {
        let path = scratch.write(#"{"access": {"uids": [0, "root"]}}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "access.uids")
        XCTAssertTrue(error.message.contains("mixes numbers and names"), error.message)
    }

    func testBadIntegerFromTheEnvironment() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_MAPPING_QUOTA": "lots"])
        XCTAssertEqual(error.description,
                       #"config key "mapping-quota" (from VTDBRIDGE_MAPPING_QUOTA): "lots" is not a whole number; expected a whole number ≥ 0 (0: no limit)"#)
    }

    func testBadIntegerFromAFlag() throws {
        let error = try configLoadError(overrides: ["control.max-clients": "x"])
        XCTAssertEqual(error.key, "control.max-clients")
        XCTAssertEqual(error.source, "--control-max-clients")
    }

    func testOutOfRangeNumbers() throws {
        var error = try configLoadError(overrides: ["mapping-quota": "-1"])
        XCTAssertEqual(error.message, "-1 is negative; expected a whole number ≥ 0 (0: no limit)")
        error = try configLoadError(environment: ["VTDBRIDGE_CONTROL_MAX_CLIENTS": "0"])
        XCTAssertEqual(error.message, "0 is out of range; expected a whole number from 1 to 1024")
        error = try configLoadError(overrides: ["access.uids": "4294967295"])
        XCTAssertTrue(error.message.hasPrefix("4294967295 is not a valid uid"), error.message)
    }

    func testBadName() throws {
        var error = try configLoadError(overrides: ["name": "vm/0"])
        XCTAssertEqual(error.key, "name")
        XCTAssertEqual(error.source, "--name")
        XCTAssertTrue(error.message.contains("has a character outside A-Z a-z 0-9 _ . -"), error.message)
        error = try configLoadError(overrides: ["name": ".."])
        XCTAssertTrue(error.message.contains("parent or the same directory"), error.message)
        error = try configLoadError(overrides: ["name": String(repeating: "a", count: 65)])
        XCTAssertTrue(error.message.contains("longer than 64 characters"), error.message)
    }

    func testBadBackend() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_BACKEND": "dryrun"])
        XCTAssertEqual(error.description, #"config key "backend" (from VTDBRIDGE_BACKEND): "dryrun" is not a backend; expected vfio or dry-run"#)
    }

    // MARK: - Users and groups

    func testBadGroupName() throws {
        let path = scratch.write(#"{"control": {"group": "no-such-group-vtd"}}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "control.group")
        XCTAssertEqual(error.source, "\(path), line 1")
        XCTAssertTrue(error.message.hasPrefix(#"no group named "no-such-group-vtd" on this system; expected a group name"#), error.message)
    }

    func testBadUserNameInAList() throws {
        let error = try configLoadError(environment: ["VTDBRIDGE_ACCESS_UIDS": "root nobody-vtd-x"])
        XCTAssertEqual(error.key, "access.uids")
        XCTAssertEqual(error.source, "VTDBRIDGE_ACCESS_UIDS")
        XCTAssertTrue(error.message.hasPrefix(#"no user named "nobody-vtd-x""#), error.message)
    }

    func testNamesResolveThroughTheUserDatabase() throws {
        let config = try DaemonConfig.load(
            file: nil, environment: [:], overrides: ["access.uids": "root", "access.gids": "root,0", "control.group": "root"])
        XCTAssertEqual(config.allowedUIDs, [0])
        XCTAssertEqual(config.allowedGIDs, [0])
        XCTAssertEqual(config.controlGroup, 0)
    }

    func testNobodyCouldConnect() throws {
        let path = scratch.write(#"{"access": {"uids": [], "gids": []}}"#)
        let error = try configLoadError(file: path)
        XCTAssertEqual(error.key, "access.uids")
        XCTAssertTrue(error.message.contains("no client could ever connect"), error.message)
    }
}
