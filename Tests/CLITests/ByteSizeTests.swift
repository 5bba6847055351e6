import VTdBridgeClient
import XCTest

/// The one size format of vtdbridgectl's output.
final class ByteSizeTests: XCTestCase {
    func testWholeUnits() {
        XCTAssertEqual(ByteSize.text(0), "0 B")
        XCTAssertEqual(ByteSize.text(1000), "1000 B")
        XCTAssertEqual(ByteSize.text(4096), "4 KiB")
        XCTAssertEqual(ByteSize.text(2 << 20), "2 MiB")
        XCTAssertEqual(ByteSize.text(1 << 30), "1 GiB")
        XCTAssertEqual(ByteSize.text(3 << 40), "3 TiB")
        XCTAssertEqual(ByteSize.text(1 << 60), "1 EiB")
    }

    func testFractionsOnlyWhenExact() {
        XCTAssertEqual(ByteSize.text(3 << 29), "1.5 GiB")
        XCTAssertEqual(ByteSize.text(5 << 28), "1.25 GiB")
        XCTAssertEqual(ByteSize.text(1536), "1.5 KiB")
        // 1.125 GiB has three decimals: the next unit down says it exactly.
        XCTAssertEqual(ByteSize.text(9 << 27), "1152 MiB")
        // 2 MiB + 4 KiB must not read as "2 MiB".
        XCTAssertEqual(ByteSize.text((2 << 20) + 4096), "2052 KiB")
        XCTAssertEqual(ByteSize.text(4097), "4097 B")
        XCTAssertEqual(ByteSize.text((1 << 30) + (1 << 20) * 10), "1034 MiB")
    }

    func testLargestValues() {
        XCTAssertEqual(ByteSize.text(UInt64.max), "\(UInt64.max) B")
        XCTAssertEqual(ByteSize.text(UInt64.max - (1 << 60) + 1), "15 EiB")
    }
}
