import VTdBridgeClient
import XCTest

/// The number syntax of vtdbridgectl's and vtdbridge-sim's options.
final class CommandLineNumberTests: XCTestCase {
    func testHexDecimalAndSuffixes() {
        XCTAssertEqual(CommandLineNumber.parse("4096"), 4096)
        XCTAssertEqual(CommandLineNumber.parse("0x7f000"), 0x7f000)
        XCTAssertEqual(CommandLineNumber.parse("0X10"), 16)
        XCTAssertEqual(CommandLineNumber.parse("64M"), 64 << 20)
        XCTAssertEqual(CommandLineNumber.parse("2g"), 2 << 30)
        XCTAssertEqual(CommandLineNumber.parse("1T"), 1 << 40)
        XCTAssertEqual(CommandLineNumber.parse("4k"), 4096)
        // A suffix scales a hex value too, and is never read as a hex digit.
        XCTAssertEqual(CommandLineNumber.parse("0x2M"), 2 << 20)
        XCTAssertEqual(CommandLineNumber.parse(" 256M\n"), 256 << 20)
    }

    func testNonNumbersAndOverflowAreNil() {
        for text in ["", "M", "0x", "12Q", "-1", "0x1g0", "1.5G", "ten", "0xfffffffffffffffff"] {
            XCTAssertNil(CommandLineNumber.parse(text), text)
        }
        XCTAssertNil(CommandLineNumber.parse("16777216T"), "2^64 overflows")
        XCTAssertEqual(CommandLineNumber.parse("16777215T"), 16_777_215 << 40)
    }
}
