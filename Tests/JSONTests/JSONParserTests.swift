@testable import JSON
import XCTest

final class JSONParserTests: XCTestCase {
    func parse(_ text: String) throws -> JSONValue { try JSONValue.parse(text) }

    func assertRefused(_ text: String, at offset: Int? = nil, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let value = try JSONValue.parse(text)
            XCTFail("accepted \(text.debugDescription) as \(value)", file: file, line: line)
        } catch {
            if let offset { XCTAssertEqual(error.offset, offset, error.description, file: file, line: line) }
            XCTAssertTrue(error.message.contains(fragment), "\"\(error.message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse("true"), .bool(true))
        XCTAssertEqual(try parse(" \t\r\nfalse \n"), .bool(false))
        XCTAssertEqual(try parse("0"), .int(0))
        XCTAssertEqual(try parse("-0"), .int(0))
        XCTAssertEqual(try parse("-12"), .int(-12))
        XCTAssertEqual(try parse("\"\""), .string(""))
        XCTAssertEqual(try parse("1.5"), .double(1.5))
        XCTAssertEqual(try parse("-2.5e3"), .double(-2500))
        XCTAssertEqual(try parse("1E2"), .double(100))
        XCTAssertEqual(try parse("1e-2"), .double(0.01))
        XCTAssertEqual(try parse("1.0"), .double(1), "a fraction makes a double")
        XCTAssertNotEqual(try parse("1.0"), .int(1))
    }

    func testIntegersKeepTheirExactValue() throws {
        XCTAssertEqual(try parse("18446744073709551615"), .uint(.max))
        XCTAssertEqual(try parse("18446744073709551615").serialized, "18446744073709551615")
        XCTAssertEqual(try parse("9223372036854775807"), .int(.max))
        XCTAssertEqual(try parse("9223372036854775808"), .uint(1 << 63))
        XCTAssertEqual(try parse("-9223372036854775808"), .int(.min))
        XCTAssertEqual(try parse("-9223372036854775808").serialized, "-9223372036854775808")
        XCTAssertEqual(try parse("[18446744073709551615,-1]").serialized, "[18446744073709551615,-1]")
        // Beyond 64 bits: a double, not an error.
        XCTAssertEqual(try parse("18446744073709551616"), .double(18446744073709551616))
        XCTAssertEqual(try parse("-10000000000000000000"), .double(-1e19))
        XCTAssertEqual(try parse("18446744073709551615").uint64Value, .max)
        XCTAssertNil(try parse("18446744073709551615").int64Value)
    }

    func testNumberGrammar() {
        assertRefused("01", at: 0, "leading zero")
        assertRefused("-01", at: 1, "leading zero")
        assertRefused("+1", at: 0, "found '+'")
        assertRefused("-", at: 1, "expected a digit")
        assertRefused("1.", at: 2, "after the decimal point")
        assertRefused(".5", at: 0, "found '.'")
        assertRefused("1e", at: 2, "exponent")
        assertRefused("1e+", at: 3, "exponent")
        assertRefused("0x10", at: 1, "after the top-level value, found 'x'")
        assertRefused("1e400", at: 0, "out of the range")
        assertRefused("NaN", at: 0, "found 'N'; strings need double quotes")
        assertRefused("Infinity", at: 0, "found 'I'; strings need double quotes")
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try parse(#""a\"b\\c\/d\b\f\n\r\t""#), .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        XCTAssertEqual(try parse(#""\u0041\u00e9\u20AC""#), .string("Aé€"))
        XCTAssertEqual(try parse(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(try parse(#""\u0000""#), .string("\u{0}"))
        XCTAssertEqual(try parse("\"héllo 😀\""), .string("héllo 😀"))
        assertRefused(#""\x""#, at: 1, "invalid escape: a backslash followed by 'x'")
        assertRefused(#""\u12""#, at: 1, "four hex digits")
        assertRefused(#""\u12G4""#, at: 1, "found 'G'")
        assertRefused(#""\ud83d""#, at: 1, "high surrogate without")
        assertRefused(#""\ud83dx""#, at: 1, "high surrogate without")
        assertRefused(#""\ud83d\u0041""#, at: 7, "does not complete the surrogate pair")
        assertRefused(#""\ude00""#, at: 1, "low surrogate without")
        assertRefused("\"a\nb\"", at: 2, "control character 0xa in a string (a line break inside quotes?)")
        assertRefused("\"a\tb\"", at: 2, "control character 0x9")
        assertRefused("\"abc", at: 0, "unterminated string")
    }

    func testStructures() throws {
        XCTAssertEqual(try parse(#"{"a":[1,{"b":null}],"c":"d"}"#), ["a": [1, ["b": .null]], "c": "d"])
        XCTAssertEqual(try parse(" [ ] "), [])
        XCTAssertEqual(try parse(" { } "), [:])
        XCTAssertEqual(try parse("[1 , 2\n,3]"), [1, 2, 3])
        assertRefused("[1,]", at: 3, "trailing comma before \"]\"")
        assertRefused("[1 2]", at: 3, "expected \",\" or \"]\" after an array element, found '2'")
        assertRefused("{\"a\":1,}", at: 7, "trailing comma before \"}\"")
        assertRefused("{\"a\" 1}", at: 5, "expected \":\" after the key \"a\"")
        assertRefused("{a:1}", at: 1, "expected a key in double quotes, found 'a'")
        assertRefused("{\"a\":1", at: 6, "expected \",\" or \"}\" after the value of \"a\", found end of text")
        assertRefused("[", at: 1, "end of text")
        assertRefused("{\"a\":1,\"a\":2}", at: 7, "key \"a\" appears twice in the same object; keep one")
        assertRefused("[1] [2]", at: 4, "after the top-level value")
        assertRefused("", at: 0, "empty")
        assertRefused("   ", at: 3, "empty")
        assertRefused("tru", at: 0, "did you mean true?")
        assertRefused("nul", at: 0, "did you mean null?")
        assertRefused("[1]\u{0C}", at: 3, "after the top-level value, found byte 0xc")
    }

    /// One byte-order mark at the very start is skipped (RFC 8259 §8.1 lets
    /// a parser ignore it; JSONParser says why this is the one policy);
    /// anywhere else it is refused, named as what it is.
    func testByteOrderMark() throws {
        XCTAssertEqual(try parse("\u{FEFF}{}"), [:])
        XCTAssertEqual(try JSONValue.parse(utf8: [0xef, 0xbb, 0xbf] + Array(" [1] ".utf8)), [1])
        assertRefused("\u{FEFF}", at: 3, "empty text")
        assertRefused("\u{FEFF}\u{FEFF}{}", at: 3, "found a byte-order mark (U+FEFF), which only the start of a text may carry")
        assertRefused(" \u{FEFF}{}", at: 1, "byte-order mark")
        assertRefused("[\u{FEFF}1]", at: 1, "byte-order mark")
        XCTAssertEqual(try parse("\"\u{FEFF}\""), .string("\u{FEFF}"), "inside a string it is a character like any other")
    }

    func testNonASCIIIsNamedWithItsCodePoint() {
        assertRefused("[é]", at: 1, "found 'é' (U+00E9)")
    }

    func testErrorsCarryLineAndColumn() {
        do throws(JSONParseError) {
            _ = try JSONValue.parse("{\n  \"a\": 1,\n  \"b\" 2\n}")
            XCTFail("accepted a missing colon")
        } catch {
            XCTAssertEqual(error.offset, 18)
            XCTAssertEqual(error.line, 3)
            XCTAssertEqual(error.column, 7)
        }
    }

    func testDepthLimit() throws {
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try parse(deep))
        assertRefused(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), at: 64, "nesting deeper than 64")
        let objects = String(repeating: "{\"a\":", count: 65) + "1" + String(repeating: "}", count: 65)
        assertRefused(objects, "nesting deeper than 64")
        // Far deeper input fails fast instead of overflowing the stack.
        assertRefused(String(repeating: "[", count: 100_000), "nesting deeper than 64")
        XCTAssertNoThrow(try JSONValue.parse("[[1]]", maxDepth: 2))
        XCTAssertThrowsError(try JSONValue.parse("[[1]]", maxDepth: 1))
    }

    func testInvalidUTF8IsRefusedWithItsOffset() {
        let cases: [([UInt8], Int)] = [
            ([0x22, 0x61, 0xff, 0x22], 2),             // 0xff never appears in UTF-8
            ([0x22, 0xc3, 0x28, 0x22], 1),             // bad continuation
            ([0x22, 0xc0, 0xaf, 0x22], 1),             // overlong '/'
            ([0x22, 0xed, 0xa0, 0x80, 0x22], 1),       // encoded surrogate U+D800
            ([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], 1), // above U+10FFFF
            ([0x22, 0xe2, 0x82, 0x22], 1),             // truncated sequence
        ]
        for (bytes, offset) in cases {
            XCTAssertThrowsError(try JSONValue.parse(utf8: bytes), "\(bytes)") { error in
                let parseError = error as! JSONParseError
                XCTAssertEqual(parseError.offset, offset, "\(bytes)")
                XCTAssertTrue(parseError.message.contains("UTF-8"), parseError.message)
            }
        }
        XCTAssertEqual(try JSONValue.parse(utf8: Array("\"é€😀\"".utf8)), .string("é€😀"))
    }

    func testErrorDescription() {
        XCTAssertEqual(JSONParseError(offset: 3, line: 1, column: 4, message: "m").description, "invalid JSON at byte 3: m")
    }
}
