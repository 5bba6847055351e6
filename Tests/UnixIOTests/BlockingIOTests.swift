import Glibc
import Posix
import UnixIO
import XCTest

/// sendAll / receiveExactly / receiveLine, on blocking and non-blocking
/// connections.
final class BlockingIOTests: SocketTestCase {
    func testReceiveLineStopsAtEachNewline() throws {
        let (a, b) = try UnixConnection.pair()
        try a.sendAll(bytes("first\nsecond\nthird"))
        try a.shutdown(write: true)

        XCTAssertEqual(try b.receiveLine()?.bytes, bytes("first"))
        // Nothing beyond the newline was consumed: a plain receive sees the rest.
        var buffer = [UInt8](repeating: 0, count: 7)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try b.receive(into: $0) }, .data(count: 7, fds: []))
        XCTAssertEqual(buffer, bytes("second\n"))

        let error = expectError { try b.receiveLine() }
        XCTAssertEqual(error?.errno, 0, "the stream ended inside a line")
        XCTAssertTrue(error?.description.contains("inside a line") == true, "\(String(describing: error))")
    }

    func testReceiveLineReturnsNilAtACleanEnd() throws {
        let (a, b) = try UnixConnection.pair()
        try a.sendAll(bytes("only\n"))
        a.close()
        XCTAssertEqual(try b.receiveLine()?.bytes, bytes("only"))
        XCTAssertNil(try b.receiveLine())
    }

    func testReceiveLineCarriesItsDescriptorAndEmptyLines() throws {
        let (a, b) = try UnixConnection.pair()
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try a.sendAll(bytes("\n"))
        try a.sendAll(bytes("{\"device-fd\":true}\n"), fds: [owned(duplicateOf: writeEnd)])

        let empty = try XCTUnwrap(try b.receiveLine())
        XCTAssertEqual(empty.bytes, [])
        XCTAssertEqual(empty.fds, [])
        let reply = try XCTUnwrap(try b.receiveLine())
        XCTAssertEqual(String(decoding: reply.bytes, as: UTF8.self), "{\"device-fd\":true}")
        XCTAssertEqual(reply.fds.count, 1)
        XCTAssertEqual(descriptorStatus(reply.fds[0])?.st_ino, descriptorStatus(writeEnd)?.st_ino)
    }

    func testReceiveLineRefusesALineLongerThanMax() throws {
        let (a, b) = try UnixConnection.pair()
        try a.sendAll(bytes("12345678\n"))
        try a.sendAll(bytes("123456789\n"))
        XCTAssertEqual(try b.receiveLine(max: 8)?.bytes, bytes("12345678"), "exactly max is allowed")
        let error = expectError { try b.receiveLine(max: 8) }
        XCTAssertEqual(error?.errno, EMSGSIZE)
    }

    func testReceiveLineLongerThanOnePeek() throws {
        let (a, b) = try UnixConnection.pair()
        let long = [UInt8](repeating: UInt8(ascii: "j"), count: 20_000)
        let worker = Worker {
            try? a.sendAll(long + bytes("\nnext\n"))
        }
        defer { worker.join() }
        XCTAssertEqual(try b.receiveLine()?.bytes, long)
        XCTAssertEqual(try b.receiveLine()?.bytes, bytes("next"))
    }

    func testReceiveExactlyGathersPiecesAndReportsTruncation() throws {
        let (a, b) = try UnixConnection.pair()
        try a.sendAll(bytes("abcd"))
        try a.sendAll(bytes("efghij"))
        XCTAssertEqual(try b.receiveExactly(count: 10)?.bytes, bytes("abcdefghij"))

        try a.sendAll(bytes("xyz"))
        a.close()
        let error = expectError { try b.receiveExactly(count: 5) }
        XCTAssertEqual(error?.errno, 0)
        XCTAssertTrue(error?.description.contains("after 3 of 5 bytes") == true, "\(String(describing: error))")
        XCTAssertNil(try b.receiveExactly(count: 1), "a clean end is nil")
    }

    /// sendAll and receiveExactly on non-blocking sockets, 8 MiB each way
    /// through a buffer of a few hundred KiB: both wait in poll when full or empty.
    func testSendAllAndReceiveExactlyOnNonBlockingSockets() throws {
        let (a, b) = try UnixConnection.pair()
        try a.setNonBlocking(true)
        try b.setNonBlocking(true)
        let payload = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }

        let attached = owned(duplicateOf: writeEnd)
        let worker = Worker {
            try? a.sendAll(payload, fds: [attached])
        }
        let received = try XCTUnwrap(try b.receiveExactly(count: payload.count))
        worker.join()
        XCTAssertEqual(received.bytes, payload)
        XCTAssertEqual(received.fds.count, 1, "sent once, with the first chunk")
    }
}
