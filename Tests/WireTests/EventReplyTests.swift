@testable import Wire
import XCTest

/// Replies (PROTOCOL.md §1.4, §1.6): golden layouts, the limits the encoder
/// enforces, and the strictness of the client-side decoder.
final class EventReplyTests: XCTestCase {
    func decodeReply(_ frame: [UInt8], requestType: EventType) -> Result<EventReply, WireError> {
        let header = FrameHeader.decode(frame[..<16])
        XCTAssertEqual(header.type, requestType.rawValue | EventType.replyBit)
        XCTAssertEqual(Int(header.length), frame.count - 16)
        return EventCodec.decodeReply(requestType: requestType.rawValue, payload: payload(of: frame))
    }

    func testHelloReplyGolden() throws {
        let frame = EventCodec.encodeReply(requestType: 1, tag: 0x0102_0304_0506_0708, .helloAccepted(devices: 2))
        XCTAssertEqual(frame, [
            0x01, 0x00, 0x00, 0x80, 0x14, 0x00, 0x00, 0x00, // type 0x80000001, length 20
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // tag
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // status OK, empty message
            0x01, 0x00, 0x00, 0x00, // version 1
            0x00, 0x00, 0x10, 0x00, // max_payload 1,048,576
            0x02, 0x00, 0x00, 0x00, // devices 2
        ])
        XCTAssertEqual(try decodeReply(frame, requestType: .hello).get(),
                       EventReply(body: .hello(version: 1, maxPayload: 1_048_576, devices: 2)))
    }

    func testRefusedHelloHasNoBody() throws {
        let frame = EventCodec.encodeReply(requestType: 1, tag: 5, EventReply(status: .capability, message: "CM=0"))
        XCTAssertEqual(frame, [0x01, 0, 0, 0x80, 12, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,
                               0x05, 0, 0, 0, 0x04, 0, 0, 0, 0x43, 0x4d, 0x3d, 0x30])
        XCTAssertEqual(try decodeReply(frame, requestType: .hello).get(), EventReply(status: .capability, message: "CM=0"))
    }

    func testBatchReplyWithAFailureRecordGolden() throws {
        let record = FailureRecord(sourceID: 0x18, operation: .map, errno: 12, iova: 0x20_0000, size: 0x1000, reason: "ENOMEM")
        let reply = EventReply(status: .partial, message: "1 failed",
                               body: .batch(BatchResultBody(waits: 1, rejectedIndex: -1, maps: 3, unmaps: 1, faults: 0, failures: [record])))
        let frame = EventCodec.encodeReply(requestType: 7, tag: 5, reply)
        XCTAssertEqual(frame, [
            0x07, 0x00, 0x00, 0x80, 0x4e, 0x00, 0x00, 0x00, // type 0x80000007, length 78
            0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tag 5
            0x08, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, // status PARTIAL, message_length 8
            0x31, 0x20, 0x66, 0x61, 0x69, 0x6c, 0x65, 0x64, // "1 failed"
            0x01, 0x00, 0x00, 0x00, // waits 1
            0xff, 0xff, 0xff, 0xff, // rejected_index -1
            0x03, 0x00, 0x00, 0x00, // maps 3
            0x01, 0x00, 0x00, 0x00, // unmaps 1
            0x00, 0x00, 0x00, 0x00, // faults 0
            0x01, 0x00, 0x00, 0x00, // failure_count 1
            0x18, 0x00, 0x01, 0x00, // source 00:03.0, operation map, reserved
            0x0c, 0x00, 0x00, 0x00, // errno ENOMEM
            0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, // iova
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size
            0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reason_length 6, reserved
            0x45, 0x4e, 0x4f, 0x4d, 0x45, 0x4d, // "ENOMEM"
        ])
        XCTAssertEqual(try decodeReply(frame, requestType: .invalidate).get(), reply)
    }

    func testNotifyRejectionGolden() throws {
        let reply = EventReply(status: .descriptor, message: "",
                               body: .batch(BatchResultBody(waits: 0, rejectedIndex: 2, maps: 1, unmaps: 0, faults: 0)))
        let frame = EventCodec.encodeReply(requestType: 8, tag: 0, reply)
        XCTAssertEqual(frame, [0x08, 0, 0, 0x80, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0x09, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try decodeReply(frame, requestType: .notify).get(), reply)
    }

    /// The common ack (OK, no message, no record), which the encoder stores
    /// in one piece: every field where §1.4 puts it.
    func testPlainInvalidateAckGolden() throws {
        let reply = EventReply(status: .ok, body: .batch(BatchResultBody(waits: 1, rejectedIndex: -1, maps: 2, unmaps: 3, faults: 4)))
        var frame: [UInt8] = [0xee]
        EventCodec.encodeReply(requestType: 7, tag: 0x0102_0304_0506_0708, reply, appendingTo: &frame)
        XCTAssertEqual(frame, [0xee,
                               0x07, 0, 0, 0x80, 32, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
                               0, 0, 0, 0, 0, 0, 0, 0,
                               1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try decodeReply(Array(frame.dropFirst()), requestType: .invalidate).get(), reply)
    }

    /// Several replies appended to one buffer (the daemon's per-read reply
    /// buffer) are the frames `encodeReply` returns, back to back: each
    /// length is patched into its own header, earlier bytes untouched.
    func testAppendingRepliesToOneBufferConcatenatesTheirFrames() throws {
        let batch = EventReply(status: .ok, body: .batch(BatchResultBody(waits: 1, rejectedIndex: -1, maps: 1, unmaps: 0, faults: 0)))
        let refusal = EventReply(status: .badState, message: "INVALIDATE while loading: send READY first")
        var buffer: [UInt8] = [0xaa]
        EventCodec.encodeReply(requestType: 7, tag: 1, batch, appendingTo: &buffer)
        EventCodec.encodeReply(requestType: 7, tag: 2, refusal, appendingTo: &buffer)
        EventCodec.encodeReply(requestType: 9, tag: 3, .ok, appendingTo: &buffer)
        let expected = [0xaa] + EventCodec.encodeReply(requestType: 7, tag: 1, batch)
            + EventCodec.encodeReply(requestType: 7, tag: 2, refusal) + EventCodec.encodeReply(requestType: 9, tag: 3, .ok)
        XCTAssertEqual(buffer, expected)
        XCTAssertEqual(Array(buffer[5..<9]), [32, 0, 0, 0], "the first frame's length: 8 + 24-byte batch body")
    }

    func testPlainRepliesAndErrors() throws {
        XCTAssertEqual(EventCodec.encodeReply(requestType: 9, tag: 3, .ok),
                       [0x09, 0, 0, 0x80, 8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        // An unknown type is answered with its own type and the reply bit (§1.2).
        let unknown = EventCodec.encodeReply(requestType: 42, tag: 1, error: WireError(status: .unknownType, message: "x"))
        XCTAssertEqual(unknown, [0x2a, 0, 0, 0x80, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0x78])
        XCTAssertEqual(try EventCodec.decodeReply(requestType: 42, payload: payload(of: unknown)).get(),
                       EventReply(status: .unknownType, message: "x"))
        // A body given where none belongs is not sent.
        let ready = EventCodec.encodeReply(requestType: 6, tag: 0, EventReply(status: .ok, body: .batch(.empty)))
        XCTAssertEqual(ready.count, 24)
    }

    func testInvalidateAndNotifyAlwaysCarryABatch() throws {
        for type in [EventType.invalidate, .notify] {
            let frame = EventCodec.encodeReply(requestType: type.rawValue, tag: 0, error: WireError(status: .badState, message: "loading"))
            XCTAssertEqual(frame.count, 16 + 8 + 7 + 24)
            XCTAssertEqual(try decodeReply(frame, requestType: type).get(),
                           EventReply(status: .badState, message: "loading", body: .batch(.empty)))
        }
    }

    func testFailuresMakeOKPartial() throws {
        let record = FailureRecord(sourceID: 1, operation: .unmap, errno: 22, iova: 0, size: 0x1000, reason: "EINVAL")
        let frame = EventCodec.encodeReply(requestType: 7, tag: 0, EventReply(body: .batch(BatchResultBody(failures: [record]))))
        let reply = try decodeReply(frame, requestType: .invalidate).get()
        XCTAssertEqual(reply.status, .partial)
        XCTAssertTrue(reply.message.hasPrefix("1 kernel operation failed"), reply.message)
    }

    func testFailureRecordsAreCappedAt64AndCounted() throws {
        let records = (0 ..< 100).map { FailureRecord(sourceID: 1, operation: .map, errno: 12, iova: UInt64($0) << 12, size: 4096, reason: "r\($0)") }
        let frame = EventCodec.encodeReply(requestType: 7, tag: 0,
                                           EventReply(status: .partial, message: "some failed", body: .batch(BatchResultBody(failures: records))))
        let reply = try decodeReply(frame, requestType: .invalidate).get()
        guard case .batch(let body) = reply.body else { return XCTFail("no batch") }
        XCTAssertEqual(body.failures, Array(records.prefix(64)))
        XCTAssertEqual(reply.message, "some failed (100 operations failed; the first 64 are listed)")
    }

    func testMessageAndReasonTruncationKeepsUTF8Whole() throws {
        // "é" is 2 bytes: 4095 ASCII bytes then "é" would end at 4097, so it is dropped whole.
        let message = String(repeating: "a", count: 4095) + "é" + "tail"
        let reason = String(repeating: "b", count: 1023) + "€"
        let record = FailureRecord(sourceID: 0, operation: .unmapAll, errno: 0, iova: 0, size: 0, reason: reason)
        let frame = EventCodec.encodeReply(requestType: 8, tag: 0,
                                           EventReply(status: .partial, message: message, body: .batch(BatchResultBody(failures: [record]))))
        let reply = try decodeReply(frame, requestType: .notify).get()
        XCTAssertEqual(reply.message, String(repeating: "a", count: 4095))
        guard case .batch(let body) = reply.body else { return XCTFail("no batch") }
        XCTAssertEqual(body.failures[0].reason, String(repeating: "b", count: 1023))
        // Exactly at the limit: untouched.
        let exact = String(repeating: "€", count: 1365) + "a" // 4096 bytes
        let exactFrame = EventCodec.encodeReply(requestType: 9, tag: 0, EventReply(status: .internal, message: exact))
        XCTAssertEqual(try decodeReply(exactFrame, requestType: .ping).get().message, exact)
        // The cap note survives a message already at the limit.
        let many = (0 ..< 65).map { _ in record }
        let capped = EventCodec.encodeReply(requestType: 7, tag: 0,
                                            EventReply(status: .partial, message: String(repeating: "x", count: 5000), body: .batch(BatchResultBody(failures: many))))
        let cappedReply = try decodeReply(capped, requestType: .invalidate).get()
        XCTAssertEqual(cappedReply.message.utf8.count, 4096)
        XCTAssertTrue(cappedReply.message.hasSuffix("(65 operations failed; the first 64 are listed)"))
    }

    func testTruncationHelper() {
        XCTAssertEqual(UTF8Text.truncated("héllo", limit: 2), "h")
        XCTAssertEqual(UTF8Text.truncated("héllo", limit: 3), "hé")
        XCTAssertEqual(UTF8Text.truncated("😀😀", limit: 7), "😀")
        XCTAssertEqual(UTF8Text.truncated("😀", limit: 3), "")
        XCTAssertEqual(UTF8Text.truncated("abc", limit: 3), "abc")
    }

    // MARK: - Strict client-side decoding

    func assertMalformed(_ type: EventType, _ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let error = failure(EventCodec.decodeReply(requestType: type.rawValue, payload: bytes), file: file, line: line) else { return }
        XCTAssertEqual(error.status, .malformed, file: file, line: line)
        XCTAssertTrue(error.message.contains(fragment), "\"\(error.message)\" lacks \"\(fragment)\"", file: file, line: line)
    }

    func testDecodeReplyRefusals() {
        let okEmpty = le(UInt32(0)) + le(UInt32(0))
        assertMalformed(.ping, [0, 0, 0, 0], "shorter than its 8-byte")
        assertMalformed(.ping, le(UInt32(14)) + le(UInt32(0)), "status 14")
        assertMalformed(.ping, le(UInt32(11)) + le(UInt32(4097)) + [UInt8](repeating: 0x61, count: 4097), "above the limit of 4096")
        assertMalformed(.ping, le(UInt32(11)) + le(UInt32(5)) + [0x61], "runs past the end")
        assertMalformed(.ping, le(UInt32(11)) + le(UInt32(2)) + [0xc3, 0x28], "not valid UTF-8")
        assertMalformed(.ping, okEmpty + [0], "1 unexpected bytes")
        assertMalformed(.hello, okEmpty + le(UInt32(1)), "HELLO body")
        assertMalformed(.invalidate, okEmpty, "shorter than its 24-byte")

        func batch(rejected: Int32 = -1, count: UInt32, status: UInt32 = 8) -> [UInt8] {
            le(status) + le(UInt32(0)) + le(UInt32(0)) + le(rejected) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(0)) + le(count)
        }
        func record(op: UInt8 = 1, reserved3: UInt8 = 0, reasonLength: UInt32 = 0, reserved28: UInt32 = 0) -> [UInt8] {
            le(UInt16(1)) + [op, reserved3] + le(Int32(1)) + le(UInt64(0)) + le(UInt64(0)) + le(reasonLength) + le(reserved28)
        }
        XCTAssertNoThrow(try EventCodec.decodeReply(requestType: 7, payload: batch(count: 1) + record()).get())
        assertMalformed(.invalidate, batch(rejected: -2, count: 0), "rejected_index -2")
        assertMalformed(.invalidate, batch(count: 65), "failure_count 65")
        assertMalformed(.invalidate, batch(count: 1, status: 0) + record(), "status is OK")
        assertMalformed(.invalidate, batch(count: 2) + record(), "failure record 1 at offset 64 is cut short")
        assertMalformed(.invalidate, batch(count: 1) + record(op: 4), "operation 4")
        assertMalformed(.invalidate, batch(count: 1) + record(reserved3: 1), "reserved field")
        assertMalformed(.invalidate, batch(count: 1) + record(reserved28: 1), "reserved field")
        assertMalformed(.invalidate, batch(count: 1) + record(reasonLength: 1025) + [UInt8](repeating: 0x61, count: 1025), "reason_length 1025")
        assertMalformed(.invalidate, batch(count: 1) + record(reasonLength: 3) + [0x61], "runs past the end")
        assertMalformed(.invalidate, batch(count: 1) + record(reasonLength: 1) + [0xff], "reason is not valid UTF-8")
        assertMalformed(.notify, batch(count: 0) + [1, 2], "2 unexpected bytes")
    }
}
