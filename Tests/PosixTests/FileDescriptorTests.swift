import Foundation
import Glibc
import Posix
import XCTest

/// The owned descriptor: closed exactly once, scoped access, take, and
/// close never retried.
final class FileDescriptorTests: XCTestCase {
    func testExplicitCloseHappensOnceAndNeverTouchesAReusedNumber() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        let descriptor = FileDescriptor(adopting: readEnd)
        XCTAssertTrue(descriptor.isOpen)
        XCTAssertEqual(descriptor.number, readEnd)
        try descriptor.close()
        XCTAssertFalse(isOpen(readEnd))
        XCTAssertFalse(descriptor.isOpen)
        XCTAssertEqual(descriptor.number, -1)

        // The kernel hands out the lowest free number: the next pipe reuses
        // it. A second close must not reach it.
        let (reused, reusedWrite) = makePipe()
        defer { close(reused); close(reusedWrite) }
        XCTAssertEqual(reused, readEnd, "the kernel hands out the lowest free number")
        let again = expectError { try descriptor.close() }
        XCTAssertEqual(again?.errno, EBADF)
        XCTAssertEqual(again?.call, "close")
        XCTAssertEqual(again?.detail, "descriptor already closed")
        XCTAssertTrue(isOpen(reused))
    }

    func testDeinitClosesAnOpenDescriptor() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        do {
            let descriptor = FileDescriptor(adopting: readEnd)
            XCTAssertTrue(descriptor.isOpen)
        }
        XCTAssertFalse(isOpen(readEnd))
    }

    func testDeinitAfterExplicitCloseDoesNotCloseAgain() throws {
        let closer = RecordingCloser()
        do {
            let descriptor = FileDescriptor(adopting: 7, subject: "fake", close: closer.close)
            try descriptor.close()
        }
        XCTAssertEqual(closer.closed, [7])
    }

    func testTakeHandsOwnershipAway() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        var taken: Int32 = -1
        do {
            let descriptor = FileDescriptor(adopting: readEnd)
            taken = descriptor.take()
            XCTAssertFalse(descriptor.isOpen)
            XCTAssertEqual(expectError { try descriptor.close() }?.errno, EBADF)
        }
        XCTAssertEqual(taken, readEnd)
        XCTAssertTrue(isOpen(readEnd), "a taken descriptor is not closed by its former owner")
        close(readEnd)
    }

    func testCloseIsNotRetriedOnEINTRAndCountsAsClosed() {
        let closer = RecordingCloser()
        closer.script([-EINTR])
        let descriptor = FileDescriptor(adopting: 42, subject: "fake 42", close: closer.close)
        let error = expectError { try descriptor.close() }
        XCTAssertEqual(error?.call, "close")
        XCTAssertEqual(error?.errno, EINTR)
        XCTAssertEqual(error?.subject, "fake 42")
        XCTAssertEqual(closer.closed, [42], "one close(2), not a retry")
        XCTAssertFalse(descriptor.isOpen, "Linux released the number even though close reported EINTR")
        XCTAssertEqual(expectError { try descriptor.close() }?.errno, EBADF)
        XCTAssertEqual(closer.closed, [42])
    }

    func testUseAfterCloseNeverRunsTheCall() throws {
        let closer = RecordingCloser()
        let descriptor = FileDescriptor(adopting: 9, close: closer.close)
        try descriptor.close()
        var ran = false
        let scoped = expectError {
            try descriptor.withRawValue("ioctl") { (_) throws(SystemError) in ran = true }
        }
        XCTAssertEqual(scoped?.call, "ioctl")
        XCTAssertEqual(scoped?.errno, EBADF)
        let called = expectError { try descriptor.call("read") { _ -> Int in ran = true; return 0 } }
        XCTAssertEqual(called?.call, "read")
        XCTAssertEqual(called?.errno, EBADF)
        XCTAssertFalse(ran)
    }

    func testCloseDuringAScopeWaitsForTheScopeToEnd() throws {
        let closer = RecordingCloser()
        let descriptor = FileDescriptor(adopting: 11, close: closer.close)
        try descriptor.withRawValue("long call") { (fd) throws(SystemError) in
            XCTAssertEqual(fd, 11)
            // Another thread's close: the number is still in use here.
            try descriptor.close()
            XCTAssertFalse(descriptor.isOpen, "closed for everyone else at once")
            XCTAssertEqual(closer.closed, [], "but not closed under the running call")
            XCTAssertEqual(expectError { try descriptor.withRawValue("next") { (_) throws(SystemError) in } }?.errno, EBADF)
        }
        XCTAssertEqual(closer.closed, [11], "the scope closed it as it left")
    }

    func testNestedAndConcurrentScopesShareTheNumber() throws {
        let closer = RecordingCloser()
        let descriptor = FileDescriptor(adopting: 12, close: closer.close)
        let inner = try descriptor.withRawValue("outer") { (outer) throws(SystemError) -> Int32 in
            try descriptor.withRawValue("inner") { (inner) throws(SystemError) -> Int32 in
                XCTAssertEqual(inner, outer)
                return inner
            }
        }
        XCTAssertEqual(inner, 12)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<1000 {
                _ = try? descriptor.call("probe") { fd -> Int32 in fd == 12 ? 0 : -EINVAL }
            }
        }
        XCTAssertEqual(closer.closed, [])
        try descriptor.close()
        XCTAssertEqual(closer.closed, [12])
    }

    func testCallRetriesEINTRAndNamesTheFailure() throws {
        let closer = RecordingCloser()
        let descriptor = FileDescriptor(adopting: 5, subject: "/dev/thing", close: closer.close)
        var attempts = 0
        let value = try descriptor.call("ioctl") { _ -> Int in
            attempts += 1
            return attempts < 3 ? -Int(EINTR) : 17
        }
        XCTAssertEqual(value, 17)
        XCTAssertEqual(attempts, 3)
        let error = expectError { try descriptor.call("ioctl", detail: "request 7") { _ -> Int in -Int(ENOTTY) } }
        XCTAssertEqual(error, SystemError(call: "ioctl", errno: ENOTTY, subject: "/dev/thing", detail: "request 7"))
    }

    func testRawCallHandsBackTheErrnoItDoesNotJudge() throws {
        let descriptor = FileDescriptor(adopting: 6, close: RecordingCloser().close)
        XCTAssertEqual(try descriptor.rawCall("recvmsg") { _ -> Int in -Int(EAGAIN) }, -Int(EAGAIN))
    }

    func testWithRawValuesHoldsEveryDescriptorOrNone() throws {
        let closer = RecordingCloser()
        let a = FileDescriptor(adopting: 20, close: closer.close)
        let b = FileDescriptor(adopting: 21, close: closer.close)
        let seen = try FileDescriptor.withRawValues([a, b], "sendmsg") { Array($0) }
        XCTAssertEqual(seen, [20, 21])
        try b.close()
        var ran = false
        let error = expectError { try FileDescriptor.withRawValues([a, b], "sendmsg") { _ in ran = true } }
        XCTAssertFalse(ran)
        XCTAssertEqual(error?.errno, EBADF)
        // `a` was released again: closing it now closes at once.
        try a.close()
        XCTAssertEqual(closer.closed, [21, 20])
    }

    func testIdentityIsTheOwner() {
        let closer = RecordingCloser()
        let a = FileDescriptor(adopting: 30, close: closer.close)
        let b = FileDescriptor(adopting: 30, close: closer.close)
        XCTAssertEqual(a, a)
        XCTAssertNotEqual(a, b, "two owners are two owners, whatever their numbers")
        XCTAssertEqual(Set([a, a, b]).count, 2)
        _ = a.take()
        _ = b.take()
    }
}

/// EBADF from the kernel on a number we own and have not closed means
/// something closed it behind its owner: the process stops with a message
/// rather than go on with a number that may be someone else's file.
final class BadDescriptorTests: XCTestCase {
    /// (The child's fatal-error message and backtrace in the log are expected.)
    func testEBADFOnAnOwnedDescriptorStopsTheProcess() throws {
        for call in ["call", "close"] {
            let child = fork()
            XCTAssertGreaterThanOrEqual(child, 0)
            if child == 0 {
                // The child touches only what it needs, then must trap.
                let descriptor = FileDescriptor(adopting: 1000, subject: "victim", close: { _ in -EBADF })
                if call == "call" {
                    _ = try? descriptor.call("read") { _ -> Int in -Int(EBADF) }
                } else {
                    try? descriptor.close()
                }
                _exit(0)
            }
            var status: Int32 = 0
            let deadline = ContinuousClock.now + .seconds(20)
            var reaped: pid_t = 0
            while reaped == 0, ContinuousClock.now < deadline {
                reaped = waitpid(child, &status, WNOHANG)
                if reaped == 0 { usleep(10_000) }
            }
            if reaped == 0 {
                kill(child, SIGKILL)
                waitpid(child, &status, 0)
                return XCTFail("\(call): the child neither trapped nor exited")
            }
            // Killed by a signal (Swift's trap: SIGILL or SIGTRAP), not exit(0).
            let signal = status & 0x7f
            XCTAssertTrue(signal == SIGILL || signal == SIGTRAP, "\(call): wait status \(status)")
        }
    }
}
