import VTd
import XCTest

final class DMAPermissionTests: XCTestCase {
    /// R is bit 0 and W bit 1 of a second-level entry (spec 9.8); a leaf
    /// written with a permission reads back with it, above the frame bits.
    func testTheEntryBitsAreThePermission() {
        let cases: [(DMAPermission, UInt64)] = [([], 0), (.read, 1), (.write, 2), (.readWrite, 3)]
        for (permission, bits) in cases {
            XCTAssertEqual(UInt64(permission.rawValue), bits)
            let leaf = SecondLevelEntry.leaf(0x4000_0000, level: 2, permission: permission)
            XCTAssertEqual(leaf.rawValue, 0x4000_0000 | 0x80 | bits)
            XCTAssertEqual(leaf.permission, permission)
            XCTAssertEqual(leaf.isPresent, !permission.isEmpty)
        }
        // Other low bits of an entry are not part of its permission.
        XCTAssertEqual(SecondLevelEntry(rawValue: 0xff5).permission, .read)
    }

    func testExactlyRefusesOtherBits() {
        XCTAssertEqual(DMAPermission(exactly: 3), .readWrite)
        XCTAssertEqual(DMAPermission(exactly: 0), [])
        for bits in UInt8(4) ... 255 { XCTAssertNil(DMAPermission(exactly: bits), "\(bits)") }
    }

    func testDescription() {
        XCTAssertEqual([DMAPermission.readWrite, .read, .write, []].map(\.description), ["rw", "r-", "-w", "--"])
    }
}
