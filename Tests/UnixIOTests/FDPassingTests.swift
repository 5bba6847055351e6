import CSocket
import Glibc
import UnixIO
import XCTest

/// SCM_RIGHTS over a real Unix socket: the descriptor that arrives is the
/// same open file, close-on-exec, and none leak when too many are sent.
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
        try sendOnce(client, "F", fds: [writeEnd])
        // Ours can go at once: the message holds its own reference.
        close(writeEnd)

        let (payload, fds) = try receiveOnce(server)
        XCTAssertEqual(payload, bytes("F"))
        XCTAssertEqual(fds.count, 1)
        let received = try XCTUnwrap(fds.first)
        defer { close(received) }
        XCTAssertEqual(csocket_is_cloexec(received), 1, "received with MSG_CMSG_CLOEXEC")

        let message = bytes("through the passed fd")
        XCTAssertEqual(write(received, message, message.count), message.count)
        var buffer = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(read(readEnd, &buffer, 64), message.count)
        XCTAssertEqual(Array(buffer[..<message.count]), message)
    }

    func testMemFDAndPipeTogetherKeepTheirOrderAndIdentity() throws {
        let memfd = try makeMemFD(name: "passing", size: 4096)
        defer { close(memfd) }
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try sendOnce(server, "two", fds: [memfd, readEnd])

        let (_, fds) = try receiveOnce(client)
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(fds.count, 2)
        let original = try XCTUnwrap(descriptorStatus(memfd))
        let arrived = try XCTUnwrap(descriptorStatus(fds[0]))
        XCTAssertEqual(arrived.st_ino, original.st_ino)
        XCTAssertEqual(arrived.st_dev, original.st_dev)
        XCTAssertEqual(descriptorStatus(fds[1])?.st_ino, descriptorStatus(readEnd)?.st_ino)

        // Written through the received one, read through ours.
        let text = bytes("shared memory")
        XCTAssertEqual(pwrite(fds[0], text, text.count, 100), text.count)
        var back = [UInt8](repeating: 0, count: text.count)
        XCTAssertEqual(pread(memfd, &back, text.count, 100), text.count)
        XCTAssertEqual(back, text)
        for fd in fds { XCTAssertEqual(csocket_is_cloexec(fd), 1) }
    }

    func testDescriptorsArriveWithTheFirstByteOfTheirMessage() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try sendOnce(client, "plain")
        try sendOnce(client, "with-fd", fds: [writeEnd])
        // A read ending inside the first message carries no descriptor...
        var buffer = [UInt8](repeating: 0, count: 3)
        let first = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
        XCTAssertEqual(first, .data(count: 3, fds: []))
        // ...the one that reaches the second message's first byte does.
        let (rest, fds) = try receiveOnce(server)
        defer { fds.forEach { close($0) } }
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
        let copies = (0..<253).map { _ in dup(readEnd) }
        XCTAssertTrue(copies.allSatisfy { $0 >= 0 })
        try sendOnce(client, "x", fds: copies)
        copies.forEach { close($0) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let result = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
        guard case let .data(count, fds) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(count, 1)
        XCTAssertEqual(fds.count, 253)
        fds.forEach { close($0) }
        XCTAssertEqual(openDescriptorCount(), before)
        // One more than the kernel allows is refused at the sender.
        let more = (0..<254).map { _ in dup(readEnd) }
        defer { more.forEach { close($0) } }
        XCTAssertThrowsError(try sendOnce(client, "y", fds: more))
    }

    func testSendingToAClosedPeerThrowsEPIPEWithoutSignal() throws {
        server.close()
        // Without MSG_NOSIGNAL this would kill the test process with SIGPIPE.
        let error = expectError { try bytes("x").withUnsafeBytes { try client.send($0) } }
        XCTAssertEqual(error?.call, "sendmsg")
        XCTAssertEqual(error?.errno, EPIPE)
        XCTAssertEqual(error?.detail, listener.path)
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
