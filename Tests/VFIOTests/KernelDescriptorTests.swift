import Glibc
import Posix
import VFIO
import XCTest

/// VFIO's descriptors are Posix `FileDescriptor`s that close through the
/// injectable kernel: the fake kernel hands out numbers of its own and must
/// see each one closed exactly once.
final class KernelDescriptorTests: XCTestCase {
    private func openFile(_ kernel: FakeKernel) throws -> FileDescriptor {
        kernel.with { $0.nodes["/f"] = .file([1, 2, 3]) }
        return try FileDescriptor.open("/f", flags: O_RDONLY, kernel: kernel)
    }

    func testExplicitCloseHappensOnceThroughTheKernel() throws {
        let kernel = FakeKernel()
        do {
            let fd = try openFile(kernel)
            XCTAssertTrue(fd.isOpen)
            XCTAssertEqual(fd.subject, "/f")
            try fd.close()
            XCTAssertFalse(fd.isOpen)
            let again = expectSystemError { try fd.close() }
            XCTAssertEqual(again?.errno, EBADF)
            XCTAssertEqual(again?.call, "close")
            XCTAssertEqual(kernel.with { $0.closed.count }, 1)
        }
        // deinit after an explicit close does not close again.
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
    }

    func testDeinitClosesAnOpenDescriptorThroughTheKernel() throws {
        let kernel = FakeKernel()
        var number: Int32 = -1
        do {
            let fd = try openFile(kernel)
            number = fd.number
            XCTAssertTrue(kernel.with { $0.closed.isEmpty })
        }
        XCTAssertEqual(kernel.with { $0.closed }, [number])
    }

    func testUseAfterCloseNeverReachesTheKernel() throws {
        let fixture = Fixture()
        let (_, group) = try fixture.readyContainer()
        let device = try group.openDevice(Fixture.device)
        try device.close()
        let requestsBefore = fixture.kernel.with { $0.requests.count }
        let error = expectError { try device.info() }
        XCTAssertEqual(error?.operation, "VFIO_DEVICE_GET_INFO")
        XCTAssertEqual(error?.subject, "device \(Fixture.device)")
        XCTAssertEqual(error?.errno, EBADF)
        XCTAssertEqual(error?.detail, "descriptor already closed")
        XCTAssertEqual(fixture.kernel.with { $0.requests.count }, requestsBefore)
    }

    func testCloseIsNotRetriedOnEINTR() throws {
        let kernel = FakeKernel()
        let fd = try openFile(kernel)
        kernel.with { $0.closeErrors = [EINTR] }
        let error = expectSystemError { try fd.close() }
        XCTAssertEqual(error?.errno, EINTR)
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
        // The descriptor is considered gone: no second close.
        XCTAssertEqual(expectSystemError { try fd.close() }?.errno, EBADF)
        XCTAssertEqual(kernel.with { $0.closed.count }, 1)
    }

    func testOpenAddsCloexecAndNamesTheSubject() throws {
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
        let fd = try FileDescriptor.open("/x", kernel: kernel, subject: "group 3")
        XCTAssertEqual(kernel.flags & O_CLOEXEC, O_CLOEXEC)
        XCTAssertEqual(kernel.flags & O_ACCMODE, O_RDWR)
        XCTAssertEqual(fd.subject, "group 3")
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
        let fd = try FileDescriptor.open("/x", kernel: kernel)
        XCTAssertEqual(kernel.attempts, 3)
        XCTAssertEqual(fd.number, 5)
    }

    func testVFIOErrorWrapsTheSystemErrorAndKeepsItsHint() {
        let kernel = FakeKernel()
        kernel.with { $0.openErrors["/dev/vfio/vfio"] = EACCES }
        let error = expectError { try FileDescriptor.open("/dev/vfio/vfio", kernel: kernel) { _ in "run as root" } }
        XCTAssertEqual(error?.system, SystemError(call: "open", errno: EACCES, subject: "/dev/vfio/vfio"))
        XCTAssertEqual(error?.hint, "run as root")
        XCTAssertEqual(error?.description, "open on /dev/vfio/vfio failed: Permission denied (errno 13); run as root")
    }
}

/// Runs `body`, expecting a Posix SystemError, and returns it.
func expectSystemError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> SystemError? {
    do {
        let value = try body()
        XCTFail("expected a SystemError, got \(value)", file: file, line: line)
    } catch let error as SystemError {
        return error
    } catch {
        XCTFail("expected a SystemError, got \(error)", file: file, line: line)
    }
    return nil
}
