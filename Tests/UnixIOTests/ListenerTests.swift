import Foundation
import Glibc
import UnixIO
import XCTest

final class ListenerTests: SocketTestCase {
    private var scratch: ScratchDirectory!

    override func setUpWithError() throws {
        scratch = try ScratchDirectory()
    }

    override func tearDown() {
        scratch = nil
    }

    /// Accepts, waiting up to a second for a client to arrive.
    private func acceptWaiting(_ listener: UnixListener, file: StaticString = #filePath, line: UInt = #line) throws -> UnixConnection? {
        let poller = Poller()
        poller.register(listener.fd, readable: true, writable: false)
        _ = try poller.wait(timeoutMilliseconds: 1000)
        let accepted = try listener.accept()
        XCTAssertNotNil(accepted, "no connection arrived", file: file, line: line)
        return accepted
    }

    func testListenConnectAcceptAndPeerCredentials() throws {
        let path = scratch.file("control.sock")
        let listener = try UnixListener.listen(path: path)
        defer { listener.close() }
        XCTAssertNil(try listener.accept(), "nothing pending: nil, not a block or an error")

        let client = try UnixConnection.connect(path: path)
        let server = try XCTUnwrap(try acceptWaiting(listener))

        let me = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
        XCTAssertEqual(server.peer, me)
        XCTAssertEqual(client.peer, me, "a client sees the listener's credentials")

        try sendOnce(client, "ping")
        XCTAssertEqual(try receiveOnce(server).bytes, bytes("ping"))
        try sendOnce(server, "pong")
        XCTAssertEqual(try receiveOnce(client).bytes, bytes("pong"))

        XCTAssertEqual(fcntl(listener.fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK)
        XCTAssertEqual(fcntl(listener.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        XCTAssertEqual(fcntl(server.fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK, "accepted connections start non-blocking")
        XCTAssertEqual(fcntl(server.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        XCTAssertEqual(fcntl(client.fd, F_GETFL) & O_NONBLOCK, 0, "connected ones start blocking")
        XCTAssertEqual(fcntl(client.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        try client.setNonBlocking(true)
        XCTAssertEqual(fcntl(client.fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK)
    }

    /// Another process connects: its pid, not ours, is what SO_PEERCRED reports.
    func testPeerCredentialsOfAnotherProcess() throws {
        let perl = "/usr/bin/perl"
        guard FileManager.default.isExecutableFile(atPath: perl) else {
            throw XCTSkip("needs \(perl) (perl-base) to run a client in another process")
        }
        let path = scratch.file("peer.sock")
        let listener = try UnixListener.listen(path: path)
        defer { listener.close() }

        let child = Process()
        child.executableURL = URL(fileURLWithPath: perl)
        // Connect, say our pid, and wait for one byte before exiting so the
        // pid is still ours when the test compares it.
        child.arguments = ["-MSocket", "-e", """
            socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
            connect($s, pack_sockaddr_un($ARGV[0])) or die "connect: $!";
            syswrite($s, "$$\\n");
            sysread($s, my $byte, 1);
            """, path]
        try child.run()
        defer { child.waitUntilExit() }

        let server = try XCTUnwrap(try acceptWaiting(listener))
        try server.setNonBlocking(false)
        let line = try XCTUnwrap(try server.receiveLine(max: 32))
        XCTAssertEqual(String(decoding: line.bytes, as: UTF8.self), "\(child.processIdentifier)")
        XCTAssertEqual(server.peer.pid, child.processIdentifier)
        XCTAssertNotEqual(server.peer.pid, getpid())
        XCTAssertEqual(server.peer.uid, getuid())
        XCTAssertEqual(server.peer.gid, getgid())
        try server.sendAll(bytes("x"))
    }

    func testStaleSocketIsReplaced() throws {
        let path = scratch.file("stale.sock")
        // A crashed daemon's leftover: the file of a socket nobody listens on.
        // (bind(2) itself fails with EADDRINUSE on an existing file, so
        // listen succeeding at all means the old file was removed.)
        close(bindRawSocket(path))
        XCTAssertNotEqual(try XCTUnwrap(fileStatus(path)).st_mode & 0o7777, 0o640)

        let listener = try UnixListener.listen(path: path, mode: 0o640)
        defer { listener.close() }
        XCTAssertEqual(try XCTUnwrap(fileStatus(path)).st_mode & 0o7777, 0o640, "our new socket file")
        let client = try UnixConnection.connect(path: path)
        let server = try XCTUnwrap(try acceptWaiting(listener))
        try sendOnce(client, "hi")
        XCTAssertEqual(try receiveOnce(server).bytes, bytes("hi"))
    }

    /// A socket that is bound but not listening also refuses connections and
    /// is replaced the same way (its owner still has it open, but it serves no one).
    func testBoundButNotListeningSocketIsReplaced() throws {
        let path = scratch.file("half.sock")
        let raw = bindRawSocket(path)
        defer { close(raw) }
        let listener = try UnixListener.listen(path: path)
        defer { listener.close() }
        _ = try UnixConnection.connect(path: path)
        XCTAssertNotNil(try acceptWaiting(listener))
    }

    func testLiveSocketIsRefusedAndKeepsWorking() throws {
        let path = scratch.file("live.sock")
        let first = try UnixListener.listen(path: path)
        defer { first.close() }
        let inode = try XCTUnwrap(fileStatus(path)).st_ino

        let error = expectError { try UnixListener.listen(path: path) }
        XCTAssertEqual(error?.call, "bind")
        XCTAssertEqual(error?.errno, EADDRINUSE)
        XCTAssertTrue(error?.description.contains("another daemon is listening on \(path)") == true,
                      "\(String(describing: error))")
        XCTAssertEqual(fileStatus(path)?.st_ino, inode, "the live socket's file is untouched")

        // The first listener still serves. Its backlog also holds the
        // refused daemon's probe connection, already closed.
        let client = try UnixConnection.connect(path: path)
        try sendOnce(client, "still here")
        var served = false
        for _ in 0..<2 {
            guard let server = try acceptWaiting(first) else { break }
            try server.setNonBlocking(false)
            var buffer = [UInt8](repeating: 0, count: 64)
            let result = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
            if case .data(let count, _) = result {
                XCTAssertEqual(Array(buffer[..<count]), bytes("still here"))
                served = true
                break
            }
            XCTAssertEqual(result, .closed, "the only other connection is the probe")
        }
        XCTAssertTrue(served)
    }

    func testNonSocketPathIsRefusedAndUntouched() throws {
        let path = scratch.file("config.sock")
        let content = "not a socket\n"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(content.utf8)))
        let inode = try XCTUnwrap(fileStatus(path)).st_ino

        let error = expectError { try UnixListener.listen(path: path) }
        XCTAssertEqual(error?.call, "bind")
        XCTAssertEqual(error?.errno, EEXIST)
        XCTAssertTrue(error?.description.contains("not a socket") == true, "\(String(describing: error))")
        XCTAssertEqual(fileStatus(path)?.st_ino, inode)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data(content.utf8))
    }

    func testSymbolicLinkToASocketIsRefused() throws {
        let target = scratch.file("target.sock")
        close(bindRawSocket(target))
        let link = scratch.file("link.sock")
        XCTAssertEqual(symlink(target, link), 0)

        XCTAssertEqual(expectError { try UnixListener.listen(path: link) }?.errno, EEXIST)
        XCTAssertEqual(try XCTUnwrap(fileStatus(link)).st_mode & S_IFMT, S_IFLNK)
        XCTAssertNotNil(fileStatus(target), "nothing behind the link was removed")
    }

    func testModeAndGroupAreApplied() throws {
        // As root any group will do; otherwise use a supplementary group we
        // are in, distinct from our primary one so the change is visible.
        let group: gid_t
        if getuid() == 0 {
            group = 4242
        } else {
            var groups = [gid_t](repeating: 0, count: 64)
            let count = getgroups(64, &groups)
            guard let other = groups.prefix(Int(max(count, 0))).first(where: { $0 != getgid() }) else {
                throw XCTSkip("not root and in no supplementary group: cannot chown a socket to another group")
            }
            group = other
        }
        let path = scratch.file("mode.sock")
        let listener = try UnixListener.listen(path: path, mode: 0o660, group: group)
        defer { listener.close() }
        let info = try XCTUnwrap(fileStatus(path))
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(info.st_gid, group)
        XCTAssertEqual(info.st_uid, getuid())

        let other = scratch.file("private.sock")
        let privateListener = try UnixListener.listen(path: other, mode: 0o600)
        defer { privateListener.close() }
        XCTAssertEqual(try XCTUnwrap(fileStatus(other)).st_mode & 0o7777, 0o600)
        XCTAssertEqual(try XCTUnwrap(fileStatus(other)).st_gid, getgid(), "no group given: unchanged")
    }

    func testCloseRemovesOurSocketFile() throws {
        let path = scratch.file("ours.sock")
        let listener = try UnixListener.listen(path: path)
        XCTAssertNotNil(fileStatus(path))
        XCTAssertNil(listener.close())
        XCTAssertNil(fileStatus(path))
        XCTAssertEqual(listener.fd, -1)
        XCTAssertEqual(listener.close()?.errno, EBADF)
        XCTAssertEqual(expectError { try UnixConnection.connect(path: path) }?.errno, ENOENT)
    }

    func testCloseLeavesAReplacementAlone() throws {
        let path = scratch.file("replaced.sock")
        let old = try UnixListener.listen(path: path)
        // Someone removed our file and a newer daemon bound the path.
        XCTAssertEqual(unlink(path), 0)
        let newer = try UnixListener.listen(path: path)
        defer { newer.close() }
        let newerInode = try XCTUnwrap(fileStatus(path)).st_ino

        XCTAssertNil(old.close())
        XCTAssertEqual(fileStatus(path)?.st_ino, newerInode, "the newer daemon's socket is not ours to remove")
        _ = try UnixConnection.connect(path: path)
        XCTAssertNotNil(try acceptWaiting(newer))
    }

    func testDroppedListenerCleansUp() throws {
        let path = scratch.file("dropped.sock")
        var fd: Int32 = -1
        do {
            let listener = try UnixListener.listen(path: path)
            fd = listener.fd
            XCTAssertNotNil(fileStatus(path))
        }
        XCTAssertNil(fileStatus(path))
        XCTAssertFalse(isOpen(fd))
    }

    func testAbstractNamesAndLongPathsAreRefused() throws {
        let abstract = expectError { try UnixListener.listen(path: "@vtd-bridge-test") }
        XCTAssertEqual(abstract?.errno, EINVAL)

        let long = scratch.file(String(repeating: "x", count: 120))
        let error = expectError { try UnixListener.listen(path: long) }
        XCTAssertEqual(error?.call, "bind")
        XCTAssertEqual(error?.errno, ENAMETOOLONG)
        XCTAssertEqual(expectError { try UnixConnection.connect(path: long) }?.errno, ENAMETOOLONG)
    }

    func testConnectErrorsNameTheCallAndPath() {
        let path = scratch.file("nobody.sock")
        let error = expectError { try UnixConnection.connect(path: path) }
        XCTAssertEqual(error?.call, "connect")
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertEqual(error?.subject, path)
    }

    func testConnectToAnAbstractName() throws {
        let name = "@vtd-bridge-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let raw = bindRawSocket(name)
        defer { close(raw) }
        XCTAssertEqual(listen(raw, 4), 0)
        let client = try UnixConnection.connect(path: name)
        let accepted = accept(raw, nil, nil)
        XCTAssertGreaterThanOrEqual(accepted, 0)
        defer { close(accepted) }
        try sendOnce(client, "abstract")
        var buffer = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(read(accepted, &buffer, 16), 8)
        XCTAssertEqual(Array(buffer[..<8]), bytes("abstract"))
    }
}
