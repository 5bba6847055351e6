import Bridge
import Foundation
import Glibc
import Posix
import UnixIO
import VTd
import VTdBridgeClient
import VTdGuest
import Wire
import XCTest

/// Bad input on either socket gets an error reply, or a closed connection
/// for that client alone; the daemon keeps serving, and no mapping changes.
final class BadInputTests: XCTestCase {
    var daemon: DaemonHarness!
    let sid = SourceID("00:03.0")!

    override func setUpWithError() throws {
        daemon = try DaemonHarness()
    }

    override func tearDown() {
        if let daemon { XCTAssertEqual(daemon.terminate(), 0, daemon.log) }
        daemon = nil
    }

    // MARK: raw event-channel client

    final class Raw {
        let connection: UnixConnection
        init(_ path: String) throws { connection = try UnixConnection.connect(path: path) }
        func send(type: UInt32, tag: UInt64 = 1, payload: [UInt8] = [], length: UInt32? = nil, fds: [FileDescriptor] = []) throws {
            var bytes: [UInt8] = []
            FrameHeader(type: type, length: length ?? UInt32(payload.count), tag: tag).encode(into: &bytes)
            try connection.sendAll(bytes + payload, fds: fds)
        }
        /// The next reply frame, or nil when the daemon closed the connection.
        func reply(for requestType: UInt32) throws -> (header: FrameHeader, reply: EventReply)? {
            guard let (h, _) = try connection.receiveExactly(count: FrameHeader.size) else { return nil }
            let header = FrameHeader.decode(h)
            var payload: [UInt8] = []
            if header.length > 0 {
                guard let (p, _) = try connection.receiveExactly(count: Int(header.length)) else { return nil }
                payload = p
            }
            return (header, try EventCodec.decodeReply(requestType: requestType, payload: payload).get())
        }
        func isClosed() throws -> Bool { try connection.receiveExactly(count: 1) == nil }
    }

    func hello() -> [UInt8] {
        let caps = IOMMUCapabilities.make()
        return Array(EventCodec.encodeRequest(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap), tag: 1).dropFirst(16))
    }

    /// A guest with one page mapped for 00:03.0, connected and READY.
    func connectGuest() throws -> (EventClient, GuestTableWriter<GuestRAM>, FileDescriptor) {
        try daemon.connectGuest(sid)
    }

    func mappings() throws -> String {
        try daemon.control().require("mappings", ["guest": "00:03.0"])["mappings"]!.serialized
    }

    // MARK: event channel

    func testMalformedFramesGetErrorRepliesAndTheConnectionStays() throws {
        let (client, _, fd) = try connectGuest()
        defer { try? fd.close() }
        let before = try mappings()
        XCTAssertTrue(before.contains("0x1000"))
        client.close()

        let raw = try Raw(daemon.eventSocket)
        try raw.send(type: 1, payload: hello())
        XCTAssertEqual(try raw.reply(for: 1)?.reply.status, .ok)

        // Unknown type: error, and the stream goes on.
        try raw.send(type: 77, tag: 5, payload: [1, 2, 3, 4])
        let unknown = try XCTUnwrap(raw.reply(for: 77))
        XCTAssertEqual(unknown.header.type, 0x8000_004d)
        XCTAssertEqual(unknown.header.tag, 5)
        XCTAssertEqual(unknown.reply.status, .unknownType)

        // A payload of the wrong length.
        try raw.send(type: EventType.setRootTable.rawValue, payload: [0, 0, 0, 0])
        XCTAssertEqual(try raw.reply(for: 3)?.reply.status, .malformed)

        // A descriptor where none belongs.
        let pipeFDs = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { pipeFDs.deallocate() }
        XCTAssertEqual(pipe(pipeFDs), 0)
        let (readEnd, writeEnd) = (FileDescriptor(adopting: pipeFDs[0]), FileDescriptor(adopting: pipeFDs[1]))
        try raw.send(type: EventType.ping.rawValue, fds: [readEnd])
        let fds = try XCTUnwrap(raw.reply(for: 9))
        XCTAssertEqual(fds.reply.status, .fds, fds.reply.message)
        try readEnd.close()
        try writeEnd.close()

        // A memory table without its descriptor.
        var table: [UInt8] = []
        for v in [UInt32(1), 0] { withUnsafeBytes(of: v.littleEndian) { table += $0 } }
        for v in [UInt64(0), 1 << 20, 0] { withUnsafeBytes(of: v.littleEndian) { table += $0 } }
        try raw.send(type: EventType.setMemTable.rawValue, payload: table)
        let missing = try XCTUnwrap(raw.reply(for: 2))
        XCTAssertEqual(missing.reply.status, .fds, missing.reply.message)

        // INVALIDATE while loading.
        try raw.send(type: EventType.invalidate.rawValue, payload: Array(EventCodec.encodeRequest(.invalidate([InvalidationWords(low: 0x12, high: 0)]), tag: 0).dropFirst(16)))
        XCTAssertEqual(try raw.reply(for: 7)?.reply.status, .badState)

        // Still serving: PING.
        try raw.send(type: EventType.ping.rawValue)
        XCTAssertEqual(try raw.reply(for: 9)?.reply.status, .ok)
        XCTAssertEqual(try mappings(), before, "no mapping changed")
    }

    func testAnOversizedLengthClosesThatConnectionOnly() throws {
        let raw = try Raw(daemon.eventSocket)
        try raw.send(type: 1, payload: hello())
        XCTAssertEqual(try raw.reply(for: 1)?.reply.status, .ok)
        try raw.send(type: EventType.invalidate.rawValue, tag: 9, length: 2 << 20)
        let reply = try XCTUnwrap(raw.reply(for: 7))
        XCTAssertEqual(reply.reply.status, .tooLarge)
        XCTAssertEqual(reply.header.tag, 9)
        XCTAssertTrue(try raw.isClosed())
        // The control socket and a new VMM are served.
        XCTAssertNoThrow(try daemon.control().require("status"))
        let again = try Raw(daemon.eventSocket)
        try again.send(type: 1, payload: hello())
        XCTAssertEqual(try again.reply(for: 1)?.reply.status, .ok)
    }

    func testATruncatedFrameIsDroppedAndTheVMMCanReconnect() throws {
        let (client, writer, fd) = try connectGuest()
        defer { try? fd.close() }
        let before = try mappings()
        // A second VMM is refused while the first is connected.
        let second = try Raw(daemon.eventSocket)
        let refused = try XCTUnwrap(second.reply(for: 0))
        XCTAssertEqual(refused.header.type, 0x8000_0000)
        XCTAssertEqual(refused.reply.status, .badState)
        XCTAssertTrue(try second.isClosed())
        client.close()

        // Half a header, then gone.
        let raw = try Raw(daemon.eventSocket)
        try raw.send(type: 1, payload: hello())
        _ = try raw.reply(for: 1)
        try raw.connection.sendAll([7, 0, 0, 0, 40, 0], fds: [])
        XCTAssertNil(raw.connection.close())
        usleep(100_000)
        XCTAssertEqual(try mappings(), before)

        // A reconnecting VMM re-sends its state; nothing changes.
        let again = try EventClient(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        try again.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try again.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 64 << 20, offset: 0)]), fds: [fd])
        try again.require(.setRootTable(writer.rootTable))
        try again.require(.setTranslation(true))
        try again.require(.ready)
        XCTAssertEqual(try mappings(), before)
        let status = try daemon.control().require("status")
        XCTAssertEqual(status["devices"]?[0]?["unmaps"]?.intValue, 0, "no unmap window on reconnect")
    }

    func testDescriptorsWithReservedBitsAreRejectedWhereHardwareWould() throws {
        var (client, writer, fd) = try connectGuest()
        defer { try? fd.close() }
        let good = try writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)[0].encoded
        let later = try writer.map(domain: 1, iova: 0x3000, gpa: 0x12000)[0].encoded
        let reply = try client.request(.invalidate([InvalidationWords(low: good.low, high: good.high),
                                                    InvalidationWords(low: 0x32 | 1 << 8, high: 0),
                                                    InvalidationWords(low: later.low, high: later.high)]))
        XCTAssertEqual(reply.status, .descriptor)
        XCTAssertTrue(reply.message.contains("reserved"), reply.message)
        guard case let .batch(body) = reply.body else { return XCTFail("no batch result") }
        XCTAssertEqual(body.rejectedIndex, 1)
        XCTAssertEqual(body.maps, 1)
        let held = try mappings()
        XCTAssertTrue(held.contains("0x2000"))
        XCTAssertFalse(held.contains("0x3000"), "nothing after the bad descriptor ran")
    }

    /// Descriptors the daemon receives where none belong (a PING, a control
    /// request) are owned from recvmsg on and closed by the daemon once the
    /// frame or line is handled: with our own copy of a pipe's write end
    /// closed as well, the read end sees end of file.
    func testDescriptorsSentWhereNoneBelongAreClosedByTheDaemon() throws {
        func pipeClosedByPeer(_ send: (FileDescriptor) throws -> Void, file: StaticString = #filePath, line: UInt = #line) throws {
            var ends: [Int32] = [-1, -1]
            XCTAssertEqual(pipe(&ends), 0)
            let readEnd = FileDescriptor(adopting: ends[0])
            do {
                let writeEnd = FileDescriptor(adopting: ends[1])
                try send(writeEnd)
                try writeEnd.close()
            }
            let events = try readEnd.withRawValue("poll") { (fd) throws(SystemError) -> Int16 in
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                return poll(&entry, 1, 5000) == 1 ? entry.revents : 0
            }
            XCTAssertNotEqual(Int32(events) & POLLHUP, 0, "the daemon still holds the write end", file: file, line: line)
        }
        let raw = try Raw(daemon.eventSocket)
        try raw.send(type: 1, payload: hello())
        XCTAssertEqual(try raw.reply(for: 1)?.reply.status, .ok)
        try pipeClosedByPeer { writeEnd in
            try raw.send(type: EventType.ping.rawValue, fds: [writeEnd])
            XCTAssertEqual(try raw.reply(for: 9)?.reply.status, .fds)
        }
        let control = try UnixConnection.connect(path: daemon.controlSocket)
        try pipeClosedByPeer { writeEnd in
            try control.sendAll(Array(ControlCodec.requestLine(command: "status", id: 1).utf8), fds: [writeEnd])
            let (reply, _) = try XCTUnwrap(control.receiveLine(max: 1 << 20))
            XCTAssertNotNil(try JSONValue.parse(String(decoding: reply, as: UTF8.self))["return"])
        }
    }

    // MARK: control socket

    func testBadControlRequestsGetStructuredErrorsAndOthersAreServed() throws {
        let (client, _, fd) = try connectGuest()
        defer { try? fd.close(); client.close() }
        let before = try mappings()
        let connection = try UnixConnection.connect(path: daemon.controlSocket)
        let other = try daemon.control()
        func ask(_ line: String) throws -> JSONValue {
            try connection.sendAll(Array((line + "\n").utf8), fds: [])
            let (bytes, _) = try XCTUnwrap(connection.receiveLine(max: 1 << 20))
            return try JSONValue.parse(String(decoding: bytes, as: UTF8.self))
        }
        XCTAssertEqual(try ask("{not json")["error"]?["code"]?.stringValue, "parse-error")
        XCTAssertEqual(try ask("[1,2]")["error"]?["code"]?.stringValue, "parse-error")
        let unknown = try ask(#"{"execute":"frobnicate","id":3}"#)
        XCTAssertEqual(unknown["error"]?["code"]?.stringValue, "unknown-command")
        XCTAssertEqual(unknown["id"]?.intValue, 3)
        let wrongType = try ask(#"{"execute":"mappings","arguments":{"guest":5},"id":"x"}"#)
        XCTAssertEqual(wrongType["error"]?["code"]?.stringValue, "invalid-argument")
        XCTAssertTrue(wrongType["error"]?["message"]?.stringValue?.contains("guest") == true)
        XCTAssertEqual(wrongType["id"]?.stringValue, "x")
        XCTAssertEqual(try ask(#"{"execute":"mappings","arguments":{"guest":"zz"}}"#)["error"]?["code"]?.stringValue, "invalid-argument")
        XCTAssertEqual(try ask(#"{"execute":"mappings"}"#)["error"]?["code"]?.stringValue, "missing-argument")
        XCTAssertEqual(try ask(#"{"execute":"detach","arguments":{"guest":"00:09.0"}}"#)["error"]?["code"]?.stringValue, "not-attached")
        XCTAssertEqual(try ask(#"{"execute":"status","arguments":{"bogus":1}}"#)["error"]?["code"]?.stringValue, "invalid-argument")
        XCTAssertEqual(try ask(#"{"execute":"log-level","arguments":{"level":"loud"}}"#)["error"]?["code"]?.stringValue, "invalid-argument")
        XCTAssertEqual(try ask(#"{"execute":"attach","arguments":{"guest":"00:03.0","host":"0000:07:00.0"}}"#)["error"]?["code"]?.stringValue, "already-attached")
        // The same connection still works, and so does another client.
        XCTAssertNotNil(try ask(#"{"execute":"status"}"#)["return"]?["devices"])
        XCTAssertNoThrow(try other.require("status"))
        // A line over 64 KiB closes that connection alone.
        try connection.sendAll(Array(String(repeating: "x", count: 70_000).utf8), fds: [])
        let (tooLong, _) = try XCTUnwrap(connection.receiveLine(max: 1 << 20))
        XCTAssertEqual(try JSONValue.parse(String(decoding: tooLong, as: UTF8.self))["error"]?["code"]?.stringValue, "line-too-long")
        XCTAssertNil(try connection.receiveLine(max: 1 << 20), "closed")
        XCTAssertNoThrow(try other.require("status"))
        XCTAssertEqual(try mappings(), before, "no mapping changed")
    }

    func testAClientThatStopsReadingDoesNotBlockOthers() throws {
        let (client, _, fd) = try connectGuest()
        defer { try? fd.close(); client.close() }
        // Pipeline many requests and never read the replies.
        let greedy = try UnixConnection.connect(path: daemon.controlSocket)
        let line = Array(#"{"execute":"status"}"#.utf8) + [10]
        try greedy.setNonBlocking(true)
        var sent = 0
        for _ in 0..<20_000 {
            let r = try line.withUnsafeBytes { try greedy.send($0, fds: []) }
            if case .sent = r { sent += 1 } else { break }
        }
        XCTAssertGreaterThan(sent, 100)
        // Others are answered promptly all the while.
        let start = Date()
        for _ in 0..<20 { XCTAssertNoThrow(try daemon.control().require("status")) }
        XCTAssertNoThrow(try client.require(.ping))
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertNil(greedy.close())
    }
}
