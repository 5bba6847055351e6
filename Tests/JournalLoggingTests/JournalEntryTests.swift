import JournalLogging
import XCTest

/// The native protocol's bytes, exactly.
final class JournalEntryTests: XCTestCase {
    func testTextFieldsAreNameEqualsValueNewline() {
        let entry = JournalEntry(fields: [.init("MESSAGE", "attached"), .init("PRIORITY", "6"), .init("DEVICE", "00:03.0")])
        XCTAssertEqual(entry.encoded, Array("MESSAGE=attached\nPRIORITY=6\nDEVICE=00:03.0\n".utf8))
    }

    func testAValueWithANewlineTakesTheBinaryForm() {
        let entry = JournalEntry(fields: [.init("MESSAGE", "two\nlines"), .init("PRIORITY", "3")])
        let expected: [UInt8] = Array("MESSAGE\n".utf8)
            + [9, 0, 0, 0, 0, 0, 0, 0]          // "two\nlines" is 9 bytes, 64-bit little-endian
            + Array("two\nlines\n".utf8)
            + Array("PRIORITY=3\n".utf8)
        XCTAssertEqual(entry.encoded, expected)
    }

    func testTheLengthIsOfUTF8BytesAndLittleEndianBeyondOneByte() {
        let value = "é\n" + String(repeating: "x", count: 300)   // 2 + 1 + 300 bytes
        let bytes = JournalEntry(fields: [.init("F", value)]).encoded
        XCTAssertEqual(Array(bytes[0..<2]), Array("F\n".utf8))
        XCTAssertEqual(Array(bytes[2..<10]), [0x2F, 0x01, 0, 0, 0, 0, 0, 0], "303 = 0x012F")
        XCTAssertEqual(Array(bytes[10..<(10 + 303)]), Array(value.utf8))
        XCTAssertEqual(bytes.last, 0x0A)
        XCTAssertEqual(bytes.count, 2 + 8 + 303 + 1)
    }

    func testAnEmptyValueIsStillAField() {
        XCTAssertEqual(JournalEntry(fields: [.init("ERROR", "")]).encoded, Array("ERROR=\n".utf8))
        XCTAssertEqual(JournalEntry().encoded, [])
    }

    func testSubscriptFindsTheFirstValue() {
        let entry = JournalEntry(fields: [.init("A", "1"), .init("A", "2")])
        XCTAssertEqual(entry["A"], "1")
        XCTAssertNil(entry["B"])
    }
}
