import Glibc
import Posix
import XCTest

/// Unix sockets at the Posix level: descriptors received are owned from
/// the moment recvmsg returns them, and the peer's groups as of connect.
final class SocketTests: XCTestCase {
    func testReceivedDescriptorsAreOwnedAndClosedWhenDropped() throws {
        let (a, b) = try FileDescriptor.unixSocketPair()
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd) }
        let sent = FileDescriptor(adopting: writeEnd)
        XCTAssertEqual(try [UInt8](repeating: 1, count: 1).withUnsafeBytes { buffer in
            Result { () throws(SystemError) -> Int? in try a.sendMessage(buffer, fds: [sent]) }
        }.get(), 1)
        try sent.close()
        var number: Int32 = -1
        do {
            var buffer = [UInt8](repeating: 0, count: 4)
            let received = try XCTUnwrap(try buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) -> (count: Int, fds: [FileDescriptor])? in try b.receiveMessage(into: raw) }
            }.get())
            XCTAssertEqual(received.count, 1)
            XCTAssertEqual(received.fds.count, 1)
            number = received.fds[0].number
            XCTAssertTrue(isOpen(number))
            XCTAssertTrue(try received.fds[0].isCloseOnExec())
        }
        XCTAssertFalse(isOpen(number), "nobody took it, so its owner closed it")
        // With every write end closed, the read end sees end of file.
        var pollEntry = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pollEntry, 1, 0), 1)
        XCTAssertNotEqual(Int32(pollEntry.revents) & POLLHUP, 0)
    }

    func testNothingQueuedIsNilNotAnError() throws {
        let (a, b) = try FileDescriptor.unixSocketPair()
        defer { withExtendedLifetime(a) {} }
        try b.setNonBlocking(true)
        var buffer = [UInt8](repeating: 0, count: 4)
        let received = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) -> (count: Int, fds: [FileDescriptor])? in try b.receiveMessage(into: raw) }
        }.get()
        XCTAssertNil(received)
        XCTAssertNil(try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) -> Int? in try b.peek(into: raw) }
        }.get())
    }

    func testPeerCredentialsAndGroupsAreOurs() throws {
        let (a, _) = try FileDescriptor.unixSocketPair()
        let credentials = try a.peerCredentials()
        XCTAssertEqual(credentials.pid, getpid())
        XCTAssertEqual(credentials.uid, getuid())
        XCTAssertEqual(credentials.gid, getgid())
        var ours = [gid_t](repeating: 0, count: Int(getgroups(0, nil)))
        XCTAssertEqual(Int(getgroups(Int32(ours.count), &ours)), ours.count)
        XCTAssertEqual(Set(try a.peerGroups()), Set(ours))
    }

    func testConnectErrorNamesTheAddress() throws {
        let socket = try FileDescriptor.unixSocket(.stream)
        let error = expectError { try socket.connect(unixAddress: "/nonexistent/vtd.sock") }
        XCTAssertEqual(error, SystemError(call: "connect", errno: ENOENT, subject: "/nonexistent/vtd.sock"))
    }
}
