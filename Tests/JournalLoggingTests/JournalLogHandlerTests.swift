import Glibc
import JournalLogging
import Logging
import Posix
import Synchronization
import XCTest

/// The handler against a real AF_UNIX datagram socket standing in for
/// journald's: what arrives is one native-protocol datagram per entry.
final class JournalLogHandlerTests: XCTestCase {
    private var directory = ""
    private var path: String { directory + "/journal.socket" }

    override func setUpWithError() throws {
        var template = Array("/tmp/vtdbridge-journal-XXXXXX".utf8CString)
        _ = try XCTUnwrap(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }, "mkdtemp failed")
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    override func tearDown() {
        unlink(path)
        rmdir(directory)
    }

    /// A bound datagram socket: journald's side.
    private func journald() throws -> FileDescriptor {
        let socket = try FileDescriptor.unixSocket(.datagram, nonBlocking: true, subject: path)
        try socket.bind(unixAddress: path)
        return socket
    }

    /// The next datagram, decoded; fails the test if none is waiting.
    private func receive(_ socket: FileDescriptor) throws -> [(String, String)]? {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let got = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) -> (count: Int, fds: [FileDescriptor])? in try socket.receiveMessage(into: raw) }
        }.get()
        guard let got else { return nil }
        return try Self.decode(Array(buffer[0..<got.count]))
    }

    /// The native protocol read back, both forms, as journald does.
    static func decode(_ bytes: [UInt8]) throws -> [(String, String)] {
        var fields: [(String, String)] = []
        var i = 0
        while i < bytes.count {
            guard let end = bytes[i...].firstIndex(where: { $0 == 0x0A || $0 == 0x3D }) else { throw DecodeError() }
            let name = String(decoding: bytes[i..<end], as: UTF8.self)
            if bytes[end] == 0x3D {
                guard let newline = bytes[end...].firstIndex(of: 0x0A) else { throw DecodeError() }
                fields.append((name, String(decoding: bytes[(end + 1)..<newline], as: UTF8.self)))
                i = newline + 1
            } else {
                guard end + 9 <= bytes.count else { throw DecodeError() }
                var length = 0
                for k in 0..<8 { length |= Int(bytes[end + 1 + k]) << (8 * k) }
                let start = end + 9
                guard start + length < bytes.count, bytes[start + length] == 0x0A else { throw DecodeError() }
                fields.append((name, String(decoding: bytes[start..<(start + length)], as: UTF8.self)))
                i = start + length + 1
            }
        }
        return fields
    }

    struct DecodeError: Error {}

    private final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    func testAnEntryArrivesWithPriorityCodeLocationAndMetadataFields() throws {
        let server = try journald()
        let fallback = Lines()
        var logger = Logger(label: "vtdbridged.vm0") { label in
            JournalLogHandler(label: label, identifier: "vtdbridged", socket: try? JournalSocket(path: self.path),
                              fallback: { fallback.append($0) })
        }
        logger.logLevel = .trace
        logger[metadataKey: "instance"] = "vm0"
        let line = #line + 1
        logger.warning("translation fault", metadata: ["device": "00:03.0", "iova": "0x1000", "fault-reason": "not-present"])

        let fields = try XCTUnwrap(try receive(server), "no datagram arrived")
        let names = fields.map(\.0)
        XCTAssertEqual(names, ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "LOGGER",
                               "DEVICE", "FAULT_REASON", "INSTANCE", "IOVA"])
        let values = Dictionary(fields, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(values["MESSAGE"], "translation fault device=00:03.0 fault-reason=not-present instance=vm0 iova=0x1000",
                       "what journalctl shows without -o json says which device")
        XCTAssertEqual(values["PRIORITY"], "4")
        XCTAssertEqual(values["SYSLOG_IDENTIFIER"], "vtdbridged")
        XCTAssertEqual(values["CODE_FILE"], #fileID)
        XCTAssertEqual(values["CODE_LINE"], "\(line)")
        XCTAssertEqual(values["CODE_FUNC"], #function)
        XCTAssertEqual(values["LOGGER"], "vtdbridged.vm0")
        XCTAssertEqual(values["DEVICE"], "00:03.0")
        XCTAssertEqual(values["IOVA"], "0x1000")
        XCTAssertEqual(values["FAULT_REASON"], "not-present")
        XCTAssertEqual(values["INSTANCE"], "vm0", "the logger's own metadata too")
        XCTAssertEqual(fallback.all, [], "nothing went to standard error")
        XCTAssertNil(try receive(server), "one datagram per entry")
    }

    func testEachLevelArrivesAtItsPriorityAndMultiLineMessagesStayWhole() throws {
        let server = try journald()
        var logger = Logger(label: "t") { JournalLogHandler(label: $0, identifier: "t", socket: try? JournalSocket(path: self.path)) }
        logger.logLevel = .trace
        for level in Logger.Level.allCases { logger.log(level: level, "at \(level)") }
        var priorities: [String] = []
        for _ in Logger.Level.allCases {
            let fields = try XCTUnwrap(try receive(server))
            priorities.append(fields.first { $0.0 == "PRIORITY" }?.1 ?? "none")
        }
        XCTAssertEqual(priorities, ["7", "7", "6", "5", "4", "3", "2"])

        logger.error("first line\nsecond line", metadata: ["detail": "a\nb"])
        let fields = try XCTUnwrap(try receive(server))
        XCTAssertEqual(fields.first { $0.0 == "MESSAGE" }?.1, "first line\nsecond line detail=a\nb")
        XCTAssertEqual(fields.first { $0.0 == "DETAIL" }?.1, "a\nb")
    }

    func testMetadataCannotReplaceTheHandlersOwnFields() throws {
        let server = try journald()
        let logger = Logger(label: "t") { JournalLogHandler(label: $0, identifier: "t", socket: try? JournalSocket(path: self.path)) }
        logger.info("hello", metadata: ["priority": "0", "message": "forged", "_PID": "1"])
        let fields = try XCTUnwrap(try receive(server))
        XCTAssertEqual(fields.filter { $0.0 == "PRIORITY" }.map(\.1), ["6"])
        XCTAssertEqual(fields.filter { $0.0 == "MESSAGE" }.map(\.1), ["hello _PID=1 message=forged priority=0"])
        XCTAssertEqual(fields.first { $0.0 == "METADATA_PRIORITY" }?.1, "0")
        XCTAssertEqual(fields.first { $0.0 == "METADATA_MESSAGE" }?.1, "forged")
        XCTAssertEqual(fields.first { $0.0 == "PID" }?.1, "1", "not _PID, which is journald's to set")
    }

    func testErrorMetadataIsTheErrorField() throws {
        struct Failure: Error, CustomStringConvertible { var description: String { "EBUSY" } }
        let server = try journald()
        let logger = Logger(label: "t") { JournalLogHandler(label: $0, identifier: "t", socket: try? JournalSocket(path: self.path)) }
        logger.error("cannot attach", metadata: ["error": "open /dev/vfio/12: EBUSY"])
        XCTAssertEqual(try XCTUnwrap(try receive(server)).filter { $0.0 == "ERROR" }.map(\.1), ["open /dev/vfio/12: EBUSY"])
        logger.error("cannot attach", error: Failure(), metadata: ["error": "open"])
        XCTAssertEqual(try XCTUnwrap(try receive(server)).filter { $0.0 == "ERROR" }.map(\.1), ["EBUSY", "open"],
                       "the event's error and the metadata's, both")
    }

    func testWithoutAJournaldTheEntryIsAPrefixedLine() throws {
        // Nothing is bound at `path`: sendto fails with ENOENT.
        let fallback = Lines()
        let socket = try JournalSocket(path: path)
        XCTAssertThrowsError(try socket.send(JournalEntry(fields: [.init("MESSAGE", "x")]))) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ENOENT)
            XCTAssertEqual((error as? SystemError)?.call, "sendto")
        }
        let logger = Logger(label: "t") { JournalLogHandler(label: $0, identifier: "t", socket: socket, fallback: { fallback.append($0) }) }
        logger.error("cannot start", metadata: ["error": "EADDRINUSE"])
        logger.notice("ready")
        XCTAssertEqual(fallback.all, ["<3>cannot start error=EADDRINUSE\n", "<5>ready\n"])

        // A journald that appears later is used from the next entry on.
        let server = try journald()
        logger.info("now native")
        XCTAssertEqual(try receive(server)?.first?.1, "now native")
        XCTAssertEqual(fallback.all.count, 2)
    }

    func testAnEntryTooLargeForADatagramFallsBack() throws {
        let server = try journald()
        defer { withExtendedLifetime(server) {} }
        let fallback = Lines()
        let logger = Logger(label: "t") { JournalLogHandler(label: $0, identifier: "t", socket: try? JournalSocket(path: self.path), fallback: { fallback.append($0) }) }
        // Past the default socket buffer (net.core.wmem_max is ~208 KiB by
        // default): EMSGSIZE or EAGAIN, either way not sent.
        logger.info("big", metadata: ["blob": .string(String(repeating: "x", count: 4 << 20))])
        XCTAssertEqual(fallback.all.count, 1)
        XCTAssertTrue(fallback.all.first?.hasPrefix("<6>big blob=xxx") ?? false)
        XCTAssertEqual(fallback.all.first?.utf8.count, 3 + 3 + 6 + (4 << 20) + 1, "the whole entry, on one line")
    }
}
