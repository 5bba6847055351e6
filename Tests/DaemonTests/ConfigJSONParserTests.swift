import XCTest
@testable import Daemon

/// The strict JSON reader that checks config files before swift-configuration
/// reads them.
final class ConfigJSONParserTests: XCTestCase {
    private func parse(_ text: String) throws -> ConfigJSON.Node {
        try ConfigJSON.parse(Array(text.utf8))
    }

    private func syntaxError(_ text: String, line: UInt = #line) -> ConfigJSON.SyntaxError? {
        do {
            let node = try ConfigJSON.parse(Array(text.utf8))
            XCTFail("parsed: \(node)", line: line)
            return nil
        } catch {
            return error
        }
    }

    func testValuesAndPositions() throws {
        let root = try parse("{\n  \"a\": [1, -2, 3.5, 1e3],\n  \"b\": {\"c\": true, \"d\": null},\n  \"e\": \"x\"\n}")
        guard case .object(let members) = root.value else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.key), ["a", "b", "e"])
        XCTAssertEqual(members.map(\.line), [2, 3, 4])
        XCTAssertEqual(members[0].column, 3)
        guard case .array(let numbers) = members[0].node.value else { return XCTFail("not an array") }
        XCTAssertEqual(numbers.map(\.value), [.integer(1), .integer(-2), .number(3.5, text: "3.5"), .number(1000, text: "1e3")])
        XCTAssertEqual(numbers[1].column, 12)
        guard case .object(let nested) = members[1].node.value else { return XCTFail("not an object") }
        XCTAssertEqual(nested.map(\.node.value), [.bool(true), .null])
        XCTAssertEqual(members[2].node.value, .string("x"))
    }

    func testStringEscapes() throws {
        let root = try parse(#"{"s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00"}"#)
        guard case .object(let members) = root.value else { return XCTFail("not an object") }
        XCTAssertEqual(members[0].node.value, .string("a\"b\\c/d\n\té😀"))
    }

    func testColumnsCountCharactersNotBytes() {
        // "é" is two UTF-8 bytes but one column.
        let error = syntaxError("{\"é\": x}")
        XCTAssertEqual(error?.line, 1)
        XCTAssertEqual(error?.column, 7)
    }

    func testByteOrderMarkIsSkipped() throws {
        let root = try ConfigJSON.parse([0xEF, 0xBB, 0xBF] + Array("{}".utf8))
        XCTAssertEqual(root.value, .object([]))
    }

    func testSyntaxErrors() {
        let cases: [(String, Int, Int, String)] = [
            ("", 1, 1, "the file is empty"),
            ("{", 1, 2, "expected a key in double quotes, found end of file"),
            ("{\"a\" 1}", 1, 6, "expected \":\" after the key \"a\""),
            ("{\"a\": 1,}", 1, 9, "trailing comma"),
            ("[1,]", 1, 4, "trailing comma"),
            ("{\"a\": 01}", 1, 8, "leading zeros"),
            ("{\"a\": 1.}", 1, 9, "expected a digit after the decimal point"),
            ("{\"a\": \"x\ny\"}", 1, 9, "control character in a string"),
            ("{\"a\": \"\\q\"}", 1, 9, "unknown escape"),
            ("{\"a\": \"\\ud800\"}", 1, 14, "low surrogate"),
            ("{\"a\": tru}", 1, 7, "did you mean true?"),
            ("{} {}", 1, 4, "after the top-level value"),
            ("{\"a\": 1, \"a\": 2}", 1, 10, "key \"a\" appears twice in the same object (first on line 1)"),
            ("{\"a\": \"unterminated}", 1, 21, "unterminated string"),
        ]
        for (text, line, column, message) in cases {
            guard let error = syntaxError(text) else { continue }
            XCTAssertEqual(error.line, line, "\(text.debugDescription): \(error)")
            XCTAssertEqual(error.column, column, "\(text.debugDescription): \(error)")
            XCTAssertTrue(error.message.contains(message), "\(text.debugDescription): \(error.message)")
        }
    }

    func testInvalidUTF8InAString() {
        XCTAssertNil(try? ConfigJSON.parse(Array("{\"a\": \"".utf8) + [0xFF] + Array("\"}".utf8)))
        do {
            _ = try ConfigJSON.parse(Array("{\"a\": \"".utf8) + [0xC3] + Array("\"}".utf8))
            XCTFail("accepted a truncated UTF-8 sequence")
        } catch {
            XCTAssertTrue(error.message.contains("not valid UTF-8"), error.message)
        }
    }

    func testNestingIsBounded() {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        let error = syntaxError("{\"a\": \(deep)}")
        XCTAssertTrue(error?.message.contains("nesting deeper than 32 levels") ?? false, "\(String(describing: error))")
    }
}
