import CVFIO
import Glibc
import XCTest

/// The ioctl wrappers report failures as -errno and successes as the
/// ioctl's result. (The shim's other calls moved to CPosix: PosixTests.)
final class ShimSyscallTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/cvfio-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        XCTAssertNotNil(made)
        directory = String(cString: made!)
    }

    override func tearDown() {
        _ = Glibc.system("rm -rf '\(directory)'")
    }

    func testIoctlOnBadDescriptorReturnsNegativeEBADF() {
        var status = vfio_group_status()
        status.argsz = 8
        XCTAssertEqual(cvfio_ioctl(-1, cvfio_VFIO_GROUP_GET_STATUS, &status), -Int(EBADF))
        XCTAssertEqual(cvfio_ioctl_int(-1, cvfio_VFIO_GET_API_VERSION, 0), -Int(EBADF))
    }

    func testVFIOIoctlOnARegularFileIsRefused() {
        let path = directory + "/plain"
        XCTAssertEqual(Glibc.close(Glibc.creat(path, 0o600)), 0)
        let plain = Glibc.open(path, O_RDWR)
        XCTAssertGreaterThanOrEqual(plain, 0)
        defer { _ = Glibc.close(plain) }
        // Regular files have no ioctls: the kernel answers ENOTTY.
        XCTAssertEqual(cvfio_ioctl_int(plain, cvfio_VFIO_GET_API_VERSION, 0), -Int(ENOTTY))
    }

}
