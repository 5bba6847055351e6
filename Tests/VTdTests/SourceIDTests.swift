import VTd
import XCTest

final class SourceIDTests: XCTestCase {
    func testParsesAndPrintsLspciForm() throws {
        let sid = try XCTUnwrap(SourceID("00:03.0"))
        XCTAssertEqual(sid.rawValue, 0x0018)
        XCTAssertEqual(sid.description, "00:03.0")
        let other = try XCTUnwrap(SourceID("0000:af:1f.7"))
        XCTAssertEqual(other.bus, 0xaf)
        XCTAssertEqual(other.device, 0x1f)
        XCTAssertEqual(other.function, 7)
        XCTAssertEqual(other.description, "af:1f.7")
    }

    func testRejectsMalformedOrOtherSegments() {
        for bad in ["", "00:03", "00:20.0", "00:03.8", "0001:00:03.0", "zz:00.0", "00:03.0.1", "100:00.0"] {
            XCTAssertNil(SourceID(bad), bad)
        }
    }
}
