@testable import Wire
import VTdGuest
import XCTest

final class FrameHeaderTests: XCTestCase {
    func testGoldenLayout() {
        var bytes: [UInt8] = []
        FrameHeader(type: 0x8000_0007, length: 0x0001_0203, tag: 0x1122_3344_5566_7788).encode(into: &bytes)
        XCTAssertEqual(bytes, [0x07, 0x00, 0x00, 0x80, 0x03, 0x02, 0x01, 0x00,
                               0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        XCTAssertEqual(FrameHeader.size, 16)
        XCTAssertEqual(FrameHeader.maxPayload, 1_048_576)
    }

    func testDecodeFromAnyCollection() {
        let bytes: [UInt8] = [0x09, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        let expected = FrameHeader(type: 9, length: 0, tag: .max)
        XCTAssertEqual(FrameHeader.decode(bytes), expected)
        XCTAssertEqual(FrameHeader.decode(([0xaa] + bytes)[1...]), expected, "a slice not starting at 0")
        XCTAssertEqual(FrameHeader.decode(AnyCollection(bytes)), expected, "a non-contiguous collection")
        XCTAssertFalse(expected.isReply)
        XCTAssertTrue(FrameHeader(type: EventType.replyType(for: 9), length: 0, tag: 0).isReply)
    }

    func testRoundTrip() {
        var rng = SplitMix64(seed: 1)
        for _ in 0 ..< 100 {
            let header = FrameHeader(type: UInt32.random(in: 0 ... .max, using: &rng),
                                     length: UInt32.random(in: 0 ... .max, using: &rng),
                                     tag: rng.next())
            var bytes: [UInt8] = []
            header.encode(into: &bytes)
            XCTAssertEqual(FrameHeader.decode(bytes), header)
        }
    }

    func testTypeAndStatusNames() {
        XCTAssertEqual(EventType.replyBit, 0x8000_0000)
        XCTAssertEqual(EventType.allCases.map(\.rawValue), Array(1 ... 9))
        XCTAssertEqual(EventType.setMemTable.name, "SET_MEM_TABLE")
        XCTAssertEqual(EventType.describe(0x8000_0001), "reply to HELLO")
        XCTAssertEqual(EventType.describe(42), "type 42")
        XCTAssertEqual(EventStatus.allCases.map(\.rawValue), Array(0 ... 13))
        XCTAssertEqual(EventStatus.allCases.map(\.name), [
            "OK", "MALFORMED", "UNKNOWN_TYPE", "BAD_STATE", "VERSION", "CAPABILITY", "FDS", "MEMORY",
            "PARTIAL", "DESCRIPTOR", "TOO_LARGE", "INTERNAL", "SHUTTING_DOWN", "MEMORY_LOST",
        ])
        XCTAssertEqual(EventStatus.allCases.filter(\.closesConnection), [.tooLarge, .shuttingDown])
        XCTAssertEqual(WireError(status: .fds, message: "m").description, "FDS: m")
    }
}
