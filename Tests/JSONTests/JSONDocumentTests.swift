import XCTest
@testable import JSON

/// The parser with positions kept (`JSONDocument`): what the config file is
/// read with. Same grammar and messages as `JSONValue.parse`.
final class JSONDocumentTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONDocument {
        try JSONDocument.parse(utf8: Array(text.utf8))
    }

    private func syntaxError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth, line: UInt = #line) -> JSONParseError? {
        do {
            let document = try JSONDocument.parse(utf8: Array(text.utf8), maxDepth: maxDepth)
            XCTFail("parsed: \(document.root)", line: line)
            return nil
        } catch {
            return error
        }
    }

    func testValuesAndPositions() throws {
        let document = try parse("{\n  \"a\": [1, -2, 3.5, 1e3],\n  \"b\": {\"c\": true, \"d\": null},\n  \"e\": \"x\"\n}")
        guard case .object(let members) = document.root.content else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.name), ["a", "b", "e"])
        XCTAssertEqual(members.map { document.line(of: $0.nameOffset) }, [2, 3, 4])
        XCTAssertEqual(document.position(of: members[0].nameOffset), JSONTextPosition(line: 2, column: 3))
        guard case .array(let numbers) = members[0].value.content else { return XCTFail("not an array") }
        XCTAssertEqual(numbers.map(\.value), [.int(1), .int(-2), .double(3.5), .double(1000)])
        XCTAssertEqual(numbers.map { document.text(of: $0) }, ["1", "-2", "3.5", "1e3"], "numbers as written")
        XCTAssertEqual(document.position(of: numbers[1].range.lowerBound).column, 12)
        guard case .object(let nested) = members[1].value.content else { return XCTFail("not an object") }
        XCTAssertEqual(nested.map(\.value.value), [.bool(true), .null])
        XCTAssertEqual(members[2].value.value, .string("x"))
        XCTAssertEqual(document.root.value, ["a": [1, -2, 3.5, 1000.0], "b": ["c": true, "d": .null], "e": "x"])
    }

    func testMembersKeepTheirWrittenOrder() throws {
        let document = try parse(#"{"z": 1, "a": 2, "m": 3}"#)
        guard case .object(let members) = document.root.content else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.name), ["z", "a", "m"])
    }

    func testStringEscapes() throws {
        let document = try parse(#"{"s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00"}"#)
        XCTAssertEqual(document.root.value["s"], .string("a\"b\\c/d\n\té😀"))
    }

    func testColumnsCountCharactersNotBytes() {
        // "é" is two UTF-8 bytes but one column.
        let error = syntaxError("{\"é\": x}")
        XCTAssertEqual(error?.line, 1)
        XCTAssertEqual(error?.column, 7)
        XCTAssertEqual(error?.offset, 7)
    }

    func testLeadingByteOrderMarkIsSkippedAndNotAColumn() throws {
        let document = try JSONDocument.parse(utf8: [0xEF, 0xBB, 0xBF] + Array("{\"a\": 1}".utf8))
        XCTAssertEqual(document.root.value, ["a": 1])
        guard case .object(let members) = document.root.content else { return XCTFail("not an object") }
        XCTAssertEqual(document.position(of: members[0].nameOffset), JSONTextPosition(line: 1, column: 2))
        do {
            _ = try JSONDocument.parse(utf8: [0xEF, 0xBB, 0xBF] + Array("{\"a\" 1}".utf8))
            XCTFail("accepted a missing colon")
        } catch {
            XCTAssertEqual(error.offset, 8)
            XCTAssertEqual(error.column, 6, "the mark is not a column: editors do not show it")
        }
    }

    func testSyntaxErrors() {
        // Where a position differs from the config reader this parser
        // replaced, it now points where the fault starts: the leading zero,
        // the backslash of a bad escape, the quote of an unterminated string.
        let cases: [(String, Int, Int, String)] = [
            ("", 1, 1, "empty text"),
            ("{", 1, 2, "expected a key in double quotes, found end of text"),
            ("{\"a\" 1}", 1, 6, "expected \":\" after the key \"a\", found '1'"),
            ("{\"a\": 1,}", 1, 9, "trailing comma before \"}\""),
            ("[1,]", 1, 4, "trailing comma before \"]\""),
            ("{\"a\": 01}", 1, 7, "leading zeros"),
            ("{\"a\": 1.}", 1, 9, "expected a digit after the decimal point"),
            ("{\"a\": \"x\ny\"}", 1, 9, "control character 0xa in a string (a line break inside quotes?)"),
            ("{\"a\": \"\\q\"}", 1, 8, "invalid escape: a backslash followed by 'q'"),
            ("{\"a\": \"\\ud800\"}", 1, 8, "high surrogate without a following \\u low surrogate"),
            ("{\"a\": tru}", 1, 7, "did you mean true?"),
            ("{} {}", 1, 4, "after the top-level value"),
            ("{\"a\": 1,\n \"a\": 2}", 2, 2, "key \"a\" appears twice in the same object (first on line 1); keep one"),
            ("{\"a\": \"unterminated}", 1, 7, "unterminated string"),
            ("{\"a\": // note\n 1}", 1, 7, "JSON has no comments"),
        ]
        for (text, line, column, message) in cases {
            guard let error = syntaxError(text) else { continue }
            XCTAssertEqual(error.line, line, "\(text.debugDescription): \(error)")
            XCTAssertEqual(error.column, column, "\(text.debugDescription): \(error)")
            XCTAssertTrue(error.message.contains(message), "\(text.debugDescription): \(error.message)")
        }
    }

    func testInvalidUTF8IsRefusedAtTheBadByte() {
        XCTAssertNil(try? JSONDocument.parse(utf8: Array("{\"a\": \"".utf8) + [0xFF] + Array("\"}".utf8)))
        do {
            _ = try JSONDocument.parse(utf8: Array("{\"a\":\n \"".utf8) + [0xC3] + Array("\"}".utf8))
            XCTFail("accepted a truncated UTF-8 sequence")
        } catch {
            XCTAssertTrue(error.message.contains("not valid UTF-8"), error.message)
            XCTAssertEqual(error.offset, 8)
            XCTAssertEqual(error.line, 2)
            XCTAssertEqual(error.column, 3)
        }
    }

    func testNestingIsBounded() {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        let error = syntaxError("{\"a\": \(deep)}", maxDepth: 32)
        XCTAssertTrue(error?.message.contains("nesting deeper than 32 arrays and objects") ?? false, "\(String(describing: error))")
        XCTAssertEqual(error?.column, 7 + 31, "at the bracket that goes one level too deep")
    }

    func testLinesOfOffsets() throws {
        let document = try parse("[\n1,\n\n2]")
        XCTAssertEqual(document.line(of: 0), 1)
        XCTAssertEqual(document.line(of: 2), 2)
        XCTAssertEqual(document.line(of: 5), 3)
        XCTAssertEqual(document.line(of: 6), 4)
        XCTAssertEqual(document.position(of: 6), JSONTextPosition(line: 4, column: 1))
    }
}
