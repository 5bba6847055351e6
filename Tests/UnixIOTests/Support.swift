import CPosix
import Foundation
import Glibc
import Posix
import UnixIO
import XCTest

/// A fresh directory under /tmp for one test's sockets (short, so socket
/// paths stay well under the 108-byte sun_path limit), removed afterwards.
final class ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/unixio-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SystemError(call: "mkdtemp", errno: errno) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a throwing call that must fail and returns its error.
func expectError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> SystemError? {
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

/// lstat(2) of a path, or nil if nothing is there.
func fileStatus(_ path: String) -> stat? {
    var info = stat()
    return lstat(path, &info) == 0 ? info : nil
}

/// fstat(2) of a descriptor.
func descriptorStatus(_ fd: Int32) -> stat? {
    var info = stat()
    return fstat(fd, &info) == 0 ? info : nil
}

/// fstat(2) of an owned descriptor, through its scope.
func descriptorStatus(_ descriptor: FileDescriptor) -> stat? {
    try? descriptor.withRawValue("fstat") { (fd) throws(SystemError) in descriptorStatus(fd) }
}

/// Whether `fd` is an open descriptor in this process.
func isOpen(_ fd: Int32) -> Bool {
    fcntl(fd, F_GETFD) >= 0
}

/// The number of open descriptors of this process (/proc/self/fd, minus the
/// one the listing itself uses).
func openDescriptorCount() -> Int {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    return entries.count - 1
}

/// A pipe as (read end, write end), both close-on-exec.
func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(pipe(&fds) == 0, "pipe failed")
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

/// A duplicate of `fd`, owned: for handing a test's raw descriptor to an API
/// that takes owned ones while the test keeps its own number.
func owned(duplicateOf fd: Int32) -> FileDescriptor {
    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
    precondition(copy >= 0, "dup failed")
    return FileDescriptor(adopting: copy)
}

/// Binds a raw socket of `type` at `name` without listening, the way a
/// crashed daemon leaves its socket file behind once its process is gone.
func bindRawSocket(_ name: String, type: Int32 = Int32(SOCK_STREAM.rawValue)) -> Int32 {
    let fd = cposix_socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue))
    precondition(fd >= 0, "socket failed: \(-fd)")
    let bound = cposix_bind_unix(fd, name)
    precondition(bound == 0, "bind \(name) failed: \(-bound)")
    return fd
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Receives once, blocking, and fails the test on anything but data.
func receiveOnce(_ connection: UnixConnection, max: Int = 4096,
                 file: StaticString = #filePath, line: UInt = #line) throws -> (bytes: [UInt8], fds: [FileDescriptor]) {
    var buffer = [UInt8](repeating: 0, count: max)
    let result = try buffer.withUnsafeMutableBytes { try connection.receive(into: $0) }
    guard case .data(let count, let fds) = result else {
        XCTFail("expected data, got \(result)", file: file, line: line)
        return ([], [])
    }
    return (Array(buffer[..<count]), fds)
}

/// Sends once and fails the test unless every byte went.
func sendOnce(_ connection: UnixConnection, _ text: String, fds: [FileDescriptor] = [],
              file: StaticString = #filePath, line: UInt = #line) throws {
    let payload = bytes(text)
    let result = try payload.withUnsafeBytes { try connection.send($0, fds: fds) }
    XCTAssertEqual(result, .sent(payload.count), file: file, line: line)
}

/// Runs `body` on a new thread; `join()` waits for it.
final class Worker: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let thread: Thread

    init(_ body: @escaping @Sendable () -> Void) {
        let done = self.done
        thread = Thread {
            body()
            done.signal()
        }
        thread.start()
    }

    func join() { done.wait() }
}

/// Base class for these tests: most of them make blocking calls on real
/// sockets, and a bug there hangs rather than fails. A test still running
/// after `limit` ends the whole run with its name, instead of leaving CI to
/// time out without saying where.
class SocketTestCase: XCTestCase {
    static let limit: DispatchTimeInterval = .seconds(60)

    override func invokeTest() {
        let name = self.name
        let watchdog = DispatchWorkItem {
            let message = Array("\(name) did not finish within \(SocketTestCase.limit): a blocking call never returned\n".utf8)
            _ = write(2, message, message.count)
            exit(1)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.limit, execute: watchdog)
        defer { watchdog.cancel() }
        super.invokeTest()
    }
}
