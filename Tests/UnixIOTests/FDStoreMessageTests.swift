import CPosix
import Glibc
import Posix
import UnixIO
import XCTest

/// What systemd's file descriptor store needs from us: FDSTORE=1 datagrams
/// that carry descriptors, LISTEN_FDS read back by name, and a listening
/// socket taken over by the next process with its backlog intact.
final class FDStoreMessageTests: SocketTestCase {
    func testFDStoreCarriesTheDescriptorsWithTheDatagram() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.file("notify")
        let receiver = try FileDescriptor.unixSocket(.datagram)
        try receiver.bind(unixAddress: path)
        let memfd = try FileDescriptor.memoryFile(name: "stored", size: 4096)
        XCTAssertTrue(try SystemdNotify.notify("FDSTORE=1\nFDNAME=device.0018.journal", descriptors: [memfd],
                                               environment: ["NOTIFY_SOCKET": path]))
        var buffer = [UInt8](repeating: 0, count: 256)
        let got = try buffer.withUnsafeMutableBytes { try receiver.receiveMessage(into: $0) }
        XCTAssertEqual(String(decoding: buffer[..<(got?.count ?? 0)], as: UTF8.self), "FDSTORE=1\nFDNAME=device.0018.journal")
        XCTAssertEqual(got?.fds.count, 1)
        // The same file, not a copy of its contents.
        XCTAssertEqual(try got?.fds.first?.status().inode, try memfd.status().inode)
        XCTAssertFalse(try SystemdNotify.notify("FDSTORE=1", descriptors: [memfd], environment: [:]), "no systemd: nothing sent")
    }

    func testListenFDsAreNamedInOrderAndOnlyForThisProcess() throws {
        let env = ["LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "event-listener::device.0018.group"]
        XCTAssertEqual(try SystemdListenFDs.parse(env, pid: 42), [
            .init(name: "event-listener", number: 3), .init(name: "unknown", number: 4),
            .init(name: "device.0018.group", number: 5),
        ])
        XCTAssertEqual(try SystemdListenFDs.parse(env, pid: 43), [], "inherited from a parent: not ours")
        XCTAssertEqual(try SystemdListenFDs.parse([:], pid: 42), [])
        XCTAssertEqual(try SystemdListenFDs.parse(["LISTEN_PID": "42", "LISTEN_FDS": "1"], pid: 42), [.init(name: "unknown", number: 3)])
        XCTAssertThrowsError(try SystemdListenFDs.parse(["LISTEN_PID": "x", "LISTEN_FDS": "1"], pid: 42))
        XCTAssertThrowsError(try SystemdListenFDs.parse(["LISTEN_PID": "42", "LISTEN_FDS": "-1"], pid: 42))
    }

    func testAnInheritedNumberThatIsNotOpenIsAnError() throws {
        XCTAssertEqual(expectError { try FileDescriptor.inherited(100_000, subject: "stored descriptor x") }?.errno, EBADF)
        let pipe = try FileDescriptor.memoryFile(name: "inherited", size: 0)
        let number = pipe.take()
        let taken = try FileDescriptor.inherited(number, subject: "stored descriptor y")
        XCTAssertTrue(try taken.isCloseOnExec())
        try taken.close()
    }

    /// A client that connects while no process listens waits in the stored
    /// socket's backlog and is accepted by the next process.
    func testAnAdoptedListenerServesTheClientsThatWaited() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.file("control.sock")
        let first = try UnixListener.listen(path: path, mode: 0o600)
        let stored = try first.storableDescriptor.duplicate()   // what systemd keeps
        first.closeKeepingSocket()
        XCTAssertNotNil(fileStatus(path), "the socket file stays for the next process")

        let client = try FileDescriptor.unixSocket(.stream)
        try client.connect(unixAddress: path)   // succeeds: the backlog holds it
        let next = try UnixListener.adopt(stored, path: path)
        let accepted = try next.accept()
        XCTAssertNotNil(accepted)
        XCTAssertEqual(accepted?.peer.pid, getpid())

        // The wrong path, or a socket that does not listen, is refused.
        let other = try next.storableDescriptor.duplicate()
        XCTAssertEqual(expectError { try UnixListener.adopt(other, path: scratch.file("elsewhere.sock")) }?.errno, EINVAL)
        let plain = try FileDescriptor.unixSocket(.stream)
        XCTAssertEqual(expectError { try UnixListener.adopt(plain, path: path) }?.errno, EINVAL)
        _ = next.close()
        XCTAssertNil(fileStatus(path))
    }
}
