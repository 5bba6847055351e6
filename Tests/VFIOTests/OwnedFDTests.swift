import Glibc
import VFIO
import XCTest

final class OwnedFDTests: XCTestCase {
    private func openFile(_ kernel: FakeKernel) throws -> OwnedFD {
        kernel.with { $0.nodes["/f"] = .file([1, 2, 3]) }
        return try OwnedFD.open("/f", flags: O_RDONLY, kernel: kernel)
    }

    func testExplicitCloseHappensOnce() throws {
        let kernel = FakeKernel()
        do {
            let fd = try openFile(kernel)
            XCTAssertTrue(fd.isOpen)
            try fd.close()
            XCTAssertFalse(fd.isOpen)
            let again = expectError { try fd.close() }
            XCTAssertEqual(again?.errno, EBADF)
            XCTAssertEqual(again?.operation, "close")
            XCTAssertEqual(kernel.with { $0.closed.count }, 1)
        }
        // deinit after an explicit close does not close again.
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
    }

    func testDeinitClosesAnOpenDescriptor() throws {
        let kernel = FakeKernel()
        var number: Int32 = -1
        do {
            let fd = try openFile(kernel)
            number = try fd.withDescriptor("peek") { $0 }
            XCTAssertTrue(kernel.with { $0.closed.isEmpty })
        }
        XCTAssertEqual(kernel.with { $0.closed }, [number])
    }

    func testUseAfterCloseNeverReachesTheKernel() throws {
        let kernel = FakeKernel()
        let fd = try openFile(kernel)
        try fd.close()
        var ran = false
        let error = expectError { try fd.withDescriptor("VFIO_DEVICE_GET_INFO") { _ in ran = true } }
        XCTAssertFalse(ran)
        XCTAssertEqual(error?.operation, "VFIO_DEVICE_GET_INFO")
        XCTAssertEqual(error?.errno, EBADF)
    }

    func testCloseIsNotRetriedOnEINTR() throws {
        let kernel = FakeKernel()
        let fd = try openFile(kernel)
        kernel.with { $0.closeErrors = [EINTR] }
        let error = expectError { try fd.close() }
        XCTAssertEqual(error?.errno, EINTR)
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
        // The descriptor is considered gone: no second close.
        XCTAssertEqual(expectError { try fd.close() }?.errno, EBADF)
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
    }

    func testOpenAddsCloexec() throws {
        final class FlagKernel: VFIOKernel, @unchecked Sendable {
            // Written once from the calling thread in this test only.
            var flags: Int32 = 0
            func open(_ path: String, flags: Int32) -> Int32 { self.flags = flags; return 3 }
            func close(_ fd: Int32) -> Int32 { 0 }
            func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int { -Int(ENOTTY) }
            func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int { -Int(ENOTTY) }
            func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int { 0 }
            func pwrite(_ fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int { 0 }
            func readLink(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int { -Int(ENOENT) }
            func directoryEntries(_ path: String, into names: inout [String]) -> Int { -Int(ENOENT) }
            func memoryLockLimit() -> (soft: UInt64, hard: UInt64)? { nil }
        }
        let kernel = FlagKernel()
        _ = try OwnedFD.open("/x", kernel: kernel)
        XCTAssertEqual(kernel.flags & O_CLOEXEC, O_CLOEXEC)
        XCTAssertEqual(kernel.flags & O_ACCMODE, O_RDWR)
    }

    func testOpenRetriesEINTR() throws {
        final class InterruptingKernel: VFIOKernel, @unchecked Sendable {
            var attempts = 0
            func open(_ path: String, flags: Int32) -> Int32 { attempts += 1; return attempts < 3 ? -EINTR : 5 }
            func close(_ fd: Int32) -> Int32 { 0 }
            func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int { -Int(ENOTTY) }
            func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int { -Int(ENOTTY) }
            func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int { 0 }
            func pwrite(_ fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int { 0 }
            func readLink(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int { -Int(ENOENT) }
            func directoryEntries(_ path: String, into names: inout [String]) -> Int { -Int(ENOENT) }
            func memoryLockLimit() -> (soft: UInt64, hard: UInt64)? { nil }
        }
        let kernel = InterruptingKernel()
        let fd = try OwnedFD.open("/x", kernel: kernel)
        XCTAssertEqual(kernel.attempts, 3)
        XCTAssertEqual(try fd.withDescriptor("peek") { $0 }, 5)
    }
}
