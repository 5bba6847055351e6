import CPosix
import Glibc
import Posix
import UnixIO
import XCTest

final class OutboundQueueTests: SocketTestCase {
    /// A large payload against a full socket buffer: partial sends, then
    /// EAGAIN, then the rest as the reader drains; each chunk's descriptor
    /// arrives with that chunk's first byte and the queue's copy is closed
    /// once the kernel has it.
    func testQueueDrainsAcrossWouldBlockWithDescriptorsOnTheirChunks() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        try reader.setNonBlocking(true)

        let first = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let second = bytes("second chunk")
        let memfd = try FileDescriptor.memoryFile(name: "queued", size: 4096)
        let (pipeRead, pipeWrite) = makePipe()
        defer { close(pipeRead) }
        let queuedMemfd = try memfd.duplicate().take()
        let queuedPipe = pipeWrite

        var queue = OutboundQueue()
        // Handed to the queue alone: it holds the only owners.
        queue.enqueue(first, fds: [FileDescriptor(adopting: queuedMemfd)])
        queue.enqueue(second, fds: [FileDescriptor(adopting: queuedPipe)])
        XCTAssertEqual(queue.byteCount, first.count + second.count)
        XCTAssertEqual(queue.fdCount, 2)

        XCTAssertFalse(try queue.flush(to: writer), "4 MiB cannot fit in a socket buffer")
        XCTAssertGreaterThan(queue.byteCount, second.count)
        XCTAssertLessThan(queue.byteCount, first.count + second.count, "part of the first chunk went")
        XCTAssertEqual(queue.fdCount, 1, "the first chunk's descriptor went with its first byte")
        XCTAssertFalse(isOpen(queuedMemfd), "the queue closed its copy once the kernel had it")
        XCTAssertTrue(isOpen(queuedPipe))
        XCTAssertFalse(try queue.flush(to: writer), "still full: nothing more fits yet")

        var received: [UInt8] = []
        var arrivals: [(offset: Int, count: Int, fds: [FileDescriptor])] = []
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        var flushed = false
        while !flushed || received.count < first.count + second.count {
            if !flushed { flushed = try queue.flush(to: writer) }
            while true {
                let result = try buffer.withUnsafeMutableBytes { try reader.receive(into: $0) }
                guard case .data(let count, let fds) = result else {
                    XCTAssertEqual(result, .wouldBlock)
                    break
                }
                arrivals.append((received.count, count, fds))
                received += buffer[..<count]
            }
        }
        XCTAssertEqual(received, first + second)
        XCTAssertEqual(queue.byteCount, 0)
        XCTAssertTrue(queue.isEmpty)

        let withFDs = arrivals.filter { !$0.fds.isEmpty }
        defer {
            withFDs.flatMap(\.fds).forEach { try? $0.close() }
            // Once the received write end is closed too, no writer is left:
            // the queue closed its own (its number may since have been
            // reused by a received descriptor, so this is checked by effect).
            var entry = pollfd(fd: pipeRead, events: Int16(POLLIN), revents: 0)
            XCTAssertEqual(poll(&entry, 1, 0), 1)
            XCTAssertNotEqual(Int32(entry.revents) & POLLHUP, 0, "a write end is still open somewhere")
        }
        XCTAssertEqual(withFDs.count, 2)
        XCTAssertEqual(withFDs.first?.offset, 0)
        XCTAssertEqual(withFDs.first?.fds.count, 1)
        let secondStart = first.count
        let carrier = try XCTUnwrap(withFDs.last)
        XCTAssertTrue(carrier.offset <= secondStart && secondStart < carrier.offset + carrier.count,
                      "the second descriptor came with the read holding the second chunk's first byte")
        XCTAssertEqual(descriptorStatus(withFDs[0].fds[0])?.st_ino, descriptorStatus(memfd)?.st_ino)
        XCTAssertEqual(descriptorStatus(carrier.fds[0])?.st_ino, descriptorStatus(pipeRead)?.st_ino)
    }

    func testSendReportsPartialThenWouldBlock() throws {
        let (writer, reader) = try UnixConnection.pair()
        defer { withExtendedLifetime(reader) {} }
        try writer.setNonBlocking(true)
        let chunk = [UInt8](repeating: 7, count: 1 << 20)
        var results: [UnixConnection.SendResult] = []
        for _ in 0..<64 {
            let result = try chunk.withUnsafeBytes { try writer.send($0) }
            results.append(result)
            if result == .wouldBlock { break }
        }
        XCTAssertEqual(results.last, .wouldBlock)
        XCTAssertTrue(results.contains { if case .sent(let n) = $0 { return n > 0 && n < chunk.count } else { return false } },
                      "a non-blocking send into a nearly full buffer sends part: \(results)")
    }

    func testUnsentDescriptorsAreClosedWhenTheQueueGoes() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd) }
        do {
            var queue = OutboundQueue()
            queue.enqueue(bytes("never sent"), fds: [FileDescriptor(adopting: writeEnd)])
            XCTAssertTrue(isOpen(writeEnd))
            XCTAssertEqual(queue.fdCount, 1)
        }
        XCTAssertFalse(isOpen(writeEnd))
    }

    func testRemoveAllClosesDescriptors() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd) }
        var queue = OutboundQueue()
        queue.enqueue(bytes("dropped"), fds: [FileDescriptor(adopting: writeEnd)])
        queue.removeAll()
        XCTAssertTrue(queue.isEmpty)
        XCTAssertEqual(queue.byteCount, 0)
        XCTAssertFalse(isOpen(writeEnd))
    }

    /// A chunk with descriptors is not gathered behind others: it starts its
    /// own sendmsg, so its descriptors arrive with its own first byte.
    func testGatheringStopsAtAChunkWithDescriptors() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd) }
        var queue = OutboundQueue()
        queue.enqueue(bytes("aaaa"))
        queue.enqueue(bytes("bbbb"))
        queue.enqueue(bytes("cccc"), fds: [FileDescriptor(adopting: writeEnd)])
        queue.enqueue(bytes("dddd"))
        XCTAssertTrue(try queue.flush(to: writer))
        XCTAssertFalse(isOpen(writeEnd))

        // Reading exactly the first 8 bytes: had the descriptor been
        // attached to the gathered call, it would come with these.
        var buffer = [UInt8](repeating: 0, count: 8)
        let first = try buffer.withUnsafeMutableBytes { try reader.receive(into: $0) }
        XCTAssertEqual(first, .data(count: 8, fds: []))
        XCTAssertEqual(buffer, bytes("aaaabbbb"))
        let second = try buffer.withUnsafeMutableBytes { try reader.receive(into: $0) }
        guard case .data(8, let fds) = second else { return XCTFail("\(second)") }
        XCTAssertEqual(buffer, bytes("ccccdddd"))
        XCTAssertEqual(fds.count, 1)
    }

    func testFlushFailureKeepsTheQueueAndThrowsEPIPE() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        reader.close()
        var queue = OutboundQueue()
        queue.enqueue(bytes("to nobody"))
        let error = expectError { try queue.flush(to: writer) }
        XCTAssertEqual(error?.call, "sendmsg")
        XCTAssertEqual(error?.errno, EPIPE)
        XCTAssertEqual(queue.byteCount, 9)
    }

    func testManySmallChunksInOrder() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        var queue = OutboundQueue()
        var expected: [UInt8] = []
        for index in 0..<500 {
            let line = bytes("line \(index)\n")
            expected += line
            queue.enqueue(line)
        }
        // About 5 KB in 500 chunks: one socket buffer entry per chunk would
        // overflow the buffer (each costs far more than its bytes); gathered,
        // it all goes at once.
        guard try queue.flush(to: writer) else {
            return XCTFail("500 small chunks did not fit; \(queue.byteCount) bytes left")
        }
        XCTAssertEqual(try reader.receiveExactly(count: expected.count)?.bytes, expected)
    }

    /// `send` with nothing queued goes at once, no copy kept; behind a
    /// queued chunk it waits its turn, so the order on the wire is the
    /// order of the calls (a queued descriptor still leads its own bytes).
    func testSendGoesAtOnceWhenEmptyAndQueuesBehindOtherwise() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        try reader.setNonBlocking(true)
        var queue = OutboundQueue()
        try bytes("direct").withUnsafeBytes { try queue.send($0, to: writer) }
        XCTAssertTrue(queue.isEmpty, "an empty queue sends at once")
        XCTAssertEqual(queue.byteCount, 0)
        XCTAssertEqual(try receiveOnce(reader).bytes, bytes("direct"))

        let (pipeRead, pipeWrite) = makePipe()
        defer { close(pipeRead) }
        queue.enqueue(bytes("queued"), fds: [FileDescriptor(adopting: pipeWrite)])
        try bytes("after").withUnsafeBytes { try queue.send($0, to: writer) }
        XCTAssertEqual(queue.byteCount, 11, "queued behind the chunk waiting before it")
        XCTAssertTrue(try queue.flush(to: writer))
        let (received, fds) = try receiveOnce(reader)
        XCTAssertEqual(received, bytes("queuedafter"))
        XCTAssertEqual(fds.count, 1)
    }

    /// Against a full socket, `send` queues exactly what the kernel did not
    /// take, and a later flush delivers the rest whole and in order.
    func testSendQueuesOnlyTheRemainder() throws {
        let (writer, reader) = try UnixConnection.pair()
        try writer.setNonBlocking(true)
        try reader.setNonBlocking(true)
        let big = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 % 253) }
        var queue = OutboundQueue()
        try big.withUnsafeBytes { try queue.send($0, to: writer) }
        XCTAssertGreaterThan(queue.byteCount, 0, "4 MiB cannot fit in a socket buffer")
        XCTAssertLessThan(queue.byteCount, big.count, "the kernel took a part at once")
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        var flushed = false
        while !flushed || received.count < big.count {
            if !flushed { flushed = try queue.flush(to: writer) }
            while case .data(let count, _) = try buffer.withUnsafeMutableBytes({ try reader.receive(into: $0) }) {
                received += buffer[..<count]
            }
        }
        XCTAssertEqual(received, big)
    }
}
