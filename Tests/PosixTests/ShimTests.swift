import CPosix
import Glibc
import XCTest

/// The CPosix wrappers report failures as -errno and successes as the
/// call's result (moved here from the CVFIO shim's tests with the calls).
final class ShimTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/cposix-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        XCTAssertNotNil(made)
        directory = String(cString: made!)
    }

    override func tearDown() {
        _ = Glibc.system("rm -rf '\(directory)'")
    }

    func testOpenMissingFileReturnsNegativeENOENT() {
        XCTAssertEqual(cposix_open(directory + "/missing", O_RDONLY, 0), -ENOENT)
    }

    func testPreadPwriteRoundTripAndCloseTwice() {
        let path = directory + "/data"
        XCTAssertEqual(Glibc.close(Glibc.creat(path, 0o600)), 0)
        let fd = cposix_open(path, O_RDWR, 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let bytes: [UInt8] = [1, 2, 3, 4]
        XCTAssertEqual(bytes.withUnsafeBytes { cposix_pwrite(fd, $0.baseAddress, 4, 100) }, 4)
        var back = [UInt8](repeating: 0, count: 4)
        XCTAssertEqual(back.withUnsafeMutableBytes { cposix_pread(fd, $0.baseAddress, 4, 100) }, 4)
        XCTAssertEqual(back, bytes)
        XCTAssertEqual(cposix_close(fd), 0)
        XCTAssertEqual(cposix_close(fd), -EBADF)
    }

    func testReadlink() {
        let link = directory + "/link"
        XCTAssertEqual(symlink("../../../kernel/iommu_groups/12", link), 0)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = cposix_readlink(link, &buffer, 64)
        XCTAssertEqual(n, 31)
        XCTAssertEqual(String(decoding: buffer[..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self),
                       "../../../kernel/iommu_groups/12")
        XCTAssertEqual(cposix_readlink(directory + "/none", &buffer, 64), -Int(ENOENT))
    }

    func testMemlockLimitMatchesGetrlimit() {
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        XCTAssertEqual(cposix_memlock_limit(&soft, &hard), 0)
        var limit = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit), 0)
        // RLIM_INFINITY is all ones on Linux.
        XCTAssertEqual(soft, limit.rlim_cur == rlim_t.max ? UInt64.max : UInt64(limit.rlim_cur))
        XCTAssertEqual(hard, limit.rlim_max == rlim_t.max ? UInt64.max : UInt64(limit.rlim_max))
        XCTAssertLessThanOrEqual(soft, hard)
    }
}
