@testable import Wire
import XCTest

final class ControlRequestTests: XCTestCase {
    let request = ControlRequest(command: .attach, arguments: [
        "guest": "00:03.0", "group": 12, "return-fd": true, "quota": -1, "huge": .uint(.max),
        "ratio": 1.0, "nothing": .null, "list": [1],
    ])

    func assertError(_ body: () throws(ControlError) -> Void, _ code: String, _ fragment: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        do throws(ControlError) {
            try body()
            XCTFail("no error", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code.rawValue, code, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "\"\(error.message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    func testStrings() throws {
        XCTAssertEqual(try request.string("guest"), "00:03.0")
        XCTAssertNil(try request.string("absent"))
        XCTAssertNil(try request.string("nothing"), "null counts as absent")
        XCTAssertEqual(try request.requiredString("guest"), "00:03.0")
        assertError({ () throws(ControlError) in _ = try request.requiredString("host") }, "missing-argument", "\"host\" is required")
        assertError({ () throws(ControlError) in _ = try request.requiredString("nothing") }, "missing-argument", "\"nothing\"")
        assertError({ () throws(ControlError) in _ = try request.string("group") }, "invalid-argument", "\"group\" must be a string, got an integer")
    }

    func testIntegers() throws {
        XCTAssertEqual(try request.int("group"), 12)
        XCTAssertEqual(try request.int("quota"), -1)
        XCTAssertNil(try request.int("absent"))
        XCTAssertEqual(try request.int("group", in: 0 ... 65535), 12)
        XCTAssertEqual(try request.requiredInt("group"), 12)
        assertError({ () throws(ControlError) in _ = try request.int("quota", in: 1 ... 1_000_000) }, "invalid-argument",
                    "\"quota\" is -1, out of range; it must be 1 to 1000000")
        assertError({ () throws(ControlError) in _ = try request.int("huge") }, "invalid-argument", "\"huge\" is 18446744073709551615, out of range")
        assertError({ () throws(ControlError) in _ = try request.int("ratio") }, "invalid-argument", "\"ratio\" must be an integer, got a non-integer number 1.0")
        assertError({ () throws(ControlError) in _ = try request.int("guest") }, "invalid-argument", "must be an integer, got a string")
        assertError({ () throws(ControlError) in _ = try request.requiredInt("absent") }, "missing-argument", "\"absent\"")
    }

    func testBools() throws {
        XCTAssertEqual(try request.bool("return-fd"), true)
        XCTAssertNil(try request.bool("absent"))
        XCTAssertEqual(try request.requiredBool("return-fd"), true)
        assertError({ () throws(ControlError) in _ = try request.bool("group") }, "invalid-argument", "\"group\" must be true or false, got an integer")
        assertError({ () throws(ControlError) in _ = try request.bool("list") }, "invalid-argument", "got an array")
    }

    func testAllowOnly() throws {
        let detach = ControlRequest(command: .detach, arguments: ["guest": "00:03.0"])
        try detach.allowOnly(["guest"])
        try detach.allowOnly(["guest", "all"])
        let typo = ControlRequest(command: .detach, arguments: ["guest": "00:03.0", "gust": "x", "b": 1])
        assertError({ () throws(ControlError) in try typo.allowOnly(["guest"]) }, "invalid-argument",
                    "argument \"b\" is not an argument of detach; it takes guest")
        assertError({ () throws(ControlError) in try detach.allowOnly([]) }, "invalid-argument", "it takes no arguments")
    }
}
