import CSocket
import Glibc
import UnixIO
import XCTest

final class MemFDAndAccountTests: SocketTestCase {
    func testMemFDHasTheSizeAndIsCloseOnExec() throws {
        let size: UInt64 = 3 << 20
        let fd = try makeMemFD(name: "guest-ram", size: size)
        defer { close(fd) }
        XCTAssertEqual(descriptorStatus(fd).map { UInt64($0.st_size) }, size)
        XCTAssertEqual(csocket_is_cloexec(fd), 1)
        var zero = [UInt8](repeating: 0xFF, count: 16)
        XCTAssertEqual(pread(fd, &zero, 16, off_t(size) - 16), 16)
        XCTAssertEqual(zero, [UInt8](repeating: 0, count: 16), "fresh pages read as zero")
        XCTAssertEqual(pread(fd, &zero, 16, off_t(size)), 0, "nothing beyond the size")
    }

    func testMemFDFailureLeaksNothing() {
        let before = openDescriptorCount()
        let error = expectError { try makeMemFD(name: "too-big", size: UInt64.max) }
        XCTAssertEqual(error?.call, "ftruncate")
        XCTAssertEqual(error?.errno, EFBIG)
        XCTAssertEqual(openDescriptorCount(), before)
    }

    func testGroupAndUserLookups() {
        XCTAssertEqual(groupID(named: "root"), 0)
        XCTAssertEqual(userID(named: "root"), 0)
        XCTAssertNil(groupID(named: "vtd-bridge-no-such-group"))
        XCTAssertNil(userID(named: "vtd-bridge-no-such-user"))
        // The current user's own name maps back to its id.
        if let entry = getpwuid(getuid()) {
            XCTAssertEqual(userID(named: String(cString: entry.pointee.pw_name)), getuid())
        }
    }
}
