import Bridge
import Foundation
import Posix
import XCTest

final class GuestRAMTests: XCTestCase {
    func testTranslationRefusesAnythingNotWhollyInOneRegion() throws {
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 1 << 20, backing: .anonymous),
                                GuestRAMRegionSpec(gpa: 1 << 20, size: 1 << 20, backing: .anonymous)])
        XCTAssertNotNil(ram.hostAddress(gpa: 0, size: 1 << 20))
        XCTAssertNil(ram.hostAddress(gpa: (1 << 20) - 4096, size: 8192), "straddles two regions")
        XCTAssertNil(ram.hostAddress(gpa: 2 << 20, size: 4096), "past the end")
        XCTAssertNil(ram.hostAddress(gpa: 0, size: 0))
        XCTAssertNil(ram.hostAddress(gpa: UInt64.max - 4095, size: 4096))
        XCTAssertNil(ram.tablePage(at: 8), "tables are page-aligned")
        XCTAssertNotNil(ram.tablePage(at: (2 << 20) - 4096))
        XCTAssertNil(ram.tablePage(at: 2 << 20))
    }

    func testBadRegionTablesAreClearErrors() {
        func message(_ specs: [GuestRAMRegionSpec]) -> String {
            do { _ = try GuestRAM(specs); return "" } catch { return error.description }
        }
        XCTAssertTrue(message([GuestRAMRegionSpec(gpa: 0, size: 4097, backing: .anonymous)]).contains("multiples of 4 KiB"))
        XCTAssertTrue(message([GuestRAMRegionSpec(gpa: 0, size: 8192, backing: .anonymous),
                               GuestRAMRegionSpec(gpa: 4096, size: 8192, backing: .anonymous)]).contains("overlaps"))
        XCTAssertTrue(message([GuestRAMRegionSpec(gpa: 0, size: 4096, backing: .path("/nonexistent/ram", offset: 0))]).contains("No such file"))
    }

    func testFileBackedRegionsReadTheFileAndRefuseShortFiles() throws {
        let path = NSTemporaryDirectory() + "vtd-ram-\(getpid())"
        defer { unlink(path) }
        var bytes = [UInt8](repeating: 0, count: 16384)
        bytes[8192] = 0xab
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0x10000, size: 8192, backing: .path(path, offset: 8192))], writable: false)
        XCTAssertEqual(ram.read(gpa: 0x10000, count: 1), [0xab])
        XCTAssertNil(ram.mutableTablePage(at: 0x10000), "a read-only mapping hands out no writable pages")
        XCTAssertThrowsError(try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 16384, backing: .path(path, offset: 4096))])) {
            XCTAssertTrue("\($0)".contains("backing file is 16384 bytes"))
        }
    }

    func testSharedMappingSeesWritesThroughTheDescriptor() throws {
        // The VMM hands us its memfd: what the guest writes, we see.
        let raw = shm_open("/vtd-ram-test-\(getpid())", O_RDWR | O_CREAT | O_EXCL, 0o600)
        XCTAssertGreaterThanOrEqual(raw, 0)
        shm_unlink("/vtd-ram-test-\(getpid())")
        let fd = FileDescriptor(adopting: raw)
        XCTAssertEqual(ftruncate(raw, 8192), 0)
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 8192, backing: .fileDescriptor(fd, offset: 0))])
        XCTAssertTrue(fd.isOpen, "GuestRAM borrows the descriptor; its owner still has it")
        XCTAssertEqual(pwrite(raw, [0x42], 1, 4100), 1)
        XCTAssertEqual(ram.read(gpa: 4100, count: 1), [0x42])
    }

    func testReSendingTheSameFileReusesItsMappingSoHostAddressesStay() throws {
        let name = "/vtd-ram-reuse-\(getpid())"
        let raw = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        shm_unlink(name)
        let fd = FileDescriptor(adopting: raw)
        XCTAssertEqual(ftruncate(raw, 1 << 20), 0)
        let spec = GuestRAMRegionSpec(gpa: 0, size: 1 << 20, backing: .fileDescriptor(fd, offset: 0))
        let first = try GuestRAM([spec])
        let again = try GuestRAM([spec], reusing: first)
        XCTAssertEqual(again.regions[0].hostAddress, first.regions[0].hostAddress)
        let fresh = try GuestRAM([spec])
        XCTAssertNotEqual(fresh.regions[0].hostAddress, first.regions[0].hostAddress)
        // Another GPA for the same bytes is another region: mapped anew.
        let moved = try GuestRAM([GuestRAMRegionSpec(gpa: 1 << 30, size: 1 << 20, backing: .fileDescriptor(fd, offset: 0))], reusing: first)
        XCTAssertNotEqual(moved.regions[0].hostAddress, first.regions[0].hostAddress)
        // The reused mapping outlives the table that made it.
        let host = again.regions[0].hostAddress
        _ = consume first
        XCTAssertTrue(again.write(gpa: 0x100, bytes: [7]))
        XCTAssertEqual(again.read(gpa: 0x100, count: 1), [7])
        XCTAssertEqual(again.regions[0].hostAddress, host)
    }
}
