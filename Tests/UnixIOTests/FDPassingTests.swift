import CPosix
import Glibc
import Posix
import UnixIO
import XCTest

/// SCM_RIGHTS over a real Unix socket: the descriptor that arrives is the
/// same open file, close-on-exec, owned from the moment it arrives, and none
/// leak when too many are sent.
final class FDPassingTests: SocketTestCase {
    private var scratch: ScratchDirectory!
    private var listener: UnixListener!
    private var client: UnixConnection!
    private var server: UnixConnection!

    override func setUpWithError() throws {
        scratch = try ScratchDirectory()
        listener = try UnixListener.listen(path: scratch.file("fds.sock"))
        client = try UnixConnection.connect(path: listener.path)
        let poller = Poller()
        poller.register(listener.fd, readable: true, writable: false)
        _ = try poller.wait(timeoutMilliseconds: 1000)
        server = try XCTUnwrap(try listener.accept(nonBlocking: false))
    }

    override func tearDown() {
        client = nil
        server = nil
        listener = nil
        scratch = nil
    }

    func testPipeEndArrivesAsTheSameFile() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd) }
        let sent = FileDescriptor(adopting: writeEnd)
        try sendOnce(client, "F", fds: [sent])
        // Ours can go at once: the message holds its own reference.
        try sent.close()

        let (payload, fds) = try receiveOnce(server)
        XCTAssertEqual(payload, bytes("F"))
        XCTAssertEqual(fds.count, 1)
        let received = try XCTUnwrap(fds.first)
        XCTAssertTrue(try received.isCloseOnExec(), "received with MSG_CMSG_CLOEXEC")

        let message = bytes("through the passed fd")
        XCTAssertEqual(try received.withRawValue("write") { (fd) throws(SystemError) in write(fd, message, message.count) },
                       message.count)
        var buffer = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(read(readEnd, &buffer, 64), message.count)
        XCTAssertEqual(Array(buffer[..<message.count]), message)
    }

    func testMemFDAndPipeTogetherKeepTheirOrderAndIdentity() throws {
        let memfd = try FileDescriptor.memoryFile(name: "passing", size: 4096)
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try sendOnce(server, "two", fds: [memfd, owned(duplicateOf: readEnd)])

        let (_, fds) = try receiveOnce(client)
        XCTAssertEqual(fds.count, 2)
        let original = try XCTUnwrap(descriptorStatus(memfd))
        let arrived = try XCTUnwrap(descriptorStatus(fds[0]))
        XCTAssertEqual(arrived.st_ino, original.st_ino)
        XCTAssertEqual(arrived.st_dev, original.st_dev)
        XCTAssertEqual(descriptorStatus(fds[1])?.st_ino, descriptorStatus(readEnd)?.st_ino)

        // Written through the received one, read through ours.
        let text = bytes("shared memory")
        XCTAssertEqual(try text.withUnsafeBytes { buffer in
            Result { () throws(SystemError) -> Int in try fds[0].write(at: 100, from: buffer) }
        }.get(), text.count)
        var back = [UInt8](repeating: 0, count: text.count)
        XCTAssertEqual(try back.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) -> Int in try memfd.read(at: 100, into: buffer) }
        }.get(), text.count)
        XCTAssertEqual(back, text)
        for fd in fds { XCTAssertTrue(try fd.isCloseOnExec()) }
    }

    func testDescriptorsArriveWithTheFirstByteOfTheirMessage() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try sendOnce(client, "plain")
        try sendOnce(client, "with-fd", fds: [owned(duplicateOf: writeEnd)])
        // A read ending inside the first message carries no descriptor...
        var buffer = [UInt8](repeating: 0, count: 3)
        let first = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
        XCTAssertEqual(first, .data(count: 3, fds: []))
        // ...the one that reaches the second message's first byte does.
        let (rest, fds) = try receiveOnce(server)
        XCTAssertEqual(rest, bytes("inwith-fd"))
        XCTAssertEqual(fds.count, 1)
    }

    func testAsManyDescriptorsAsTheKernelAllowsArriveWhole() throws {
        // The receive buffer has room for SCM_MAX_FD (253), the most one
        // message can carry, so a peer sending more than a protocol allows
        // is answered by the protocol, not cut off by truncation.
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        let before = openDescriptorCount()
        do {
            let copies = (0..<253).map { _ in owned(duplicateOf: readEnd) }
            try sendOnce(client, "x", fds: copies)
        }
        do {
            var buffer = [UInt8](repeating: 0, count: 16)
            let result = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
            guard case let .data(count, fds) = result else { return XCTFail("\(result)") }
            XCTAssertEqual(count, 1)
            XCTAssertEqual(fds.count, 253)
        }
        XCTAssertEqual(openDescriptorCount(), before, "every received descriptor was closed with its owner")
        // One more than the kernel allows is refused at the sender.
        let more = (0..<254).map { _ in owned(duplicateOf: readEnd) }
        XCTAssertThrowsError(try sendOnce(client, "y", fds: more))
    }

    func testSendingToAClosedPeerThrowsEPIPEWithoutSignal() throws {
        server.close()
        // Without MSG_NOSIGNAL this would kill the test process with SIGPIPE.
        let error = expectError { try bytes("x").withUnsafeBytes { try client.send($0) } }
        XCTAssertEqual(error?.call, "sendmsg")
        XCTAssertEqual(error?.errno, EPIPE)
        XCTAssertEqual(error?.subject, listener.path)
    }

    func testReceiveReportsEndOfStream() throws {
        try client.shutdown(write: true)
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }, .closed)
    }

    func testNonBlockingReceiveWithNothingQueued() throws {
        try server.setNonBlocking(true)
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }, .wouldBlock)
    }
}
