@testable import Wire
import VTdGuest
import XCTest

final class VFIOUserHeaderTests: XCTestCase {
    func testGoldenLayout() {
        var bytes: [UInt8] = []
        VFIOUserHeader(messageID: 0x0102, command: 0x0304, messageSize: 0x0506_0708, flags: 0x21, error: 0x0A0B_0C0D).encode(into: &bytes)
        XCTAssertEqual(bytes, [0x02, 0x01, 0x04, 0x03, 0x08, 0x07, 0x06, 0x05,
                               0x21, 0x00, 0x00, 0x00, 0x0D, 0x0C, 0x0B, 0x0A])
        XCTAssertEqual(VFIOUserHeader.size, 16)
    }

    func testFlagBits() {
        let command = VFIOUserHeader(messageID: 0, command: 1, messageSize: 16, flags: 0x10)
        XCTAssertTrue(command.isCommand)
        XCTAssertFalse(command.isReply)
        XCTAssertTrue(command.noReply)
        XCTAssertFalse(command.isError)
        let failed = VFIOUserHeader(messageID: 0, command: 1, messageSize: 16, flags: 0x21, error: 22)
        XCTAssertTrue(failed.isReply)
        XCTAssertTrue(failed.isError)
        XCTAssertFalse(failed.noReply)
        XCTAssertEqual(VFIOUserHeader.definedFlags, 0x3F)
    }

    func testDecodeFromAnyCollectionAndRoundTrip() {
        let bytes: [UInt8] = [0x22, 0x00, 0x03, 0x00, 0x28, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0]
        let expected = VFIOUserHeader(messageID: 34, command: 3, messageSize: 40, flags: 1, error: 0)
        XCTAssertEqual(VFIOUserHeader.decode(bytes), expected)
        XCTAssertEqual(VFIOUserHeader.decode(([0xAA] + bytes)[1...]), expected, "a slice not starting at 0")
        XCTAssertEqual(VFIOUserHeader.decode(AnyCollection(bytes)), expected, "a non-contiguous collection")
        var rng = SplitMix64(seed: 11)
        for _ in 0 ..< 100 {
            let header = VFIOUserHeader(messageID: UInt16.random(in: 0 ... .max, using: &rng),
                                        command: UInt16.random(in: 0 ... .max, using: &rng),
                                        messageSize: UInt32.random(in: 0 ... .max, using: &rng),
                                        flags: UInt32.random(in: 0 ... .max, using: &rng),
                                        error: UInt32.random(in: 0 ... .max, using: &rng))
            var encoded: [UInt8] = []
            header.encode(into: &encoded)
            XCTAssertEqual(VFIOUserHeader.decode(encoded), header)
        }
    }

    func testCommandNumbersAndNames() {
        XCTAssertEqual(VFIOUserCommand.allCases.map(\.rawValue), Array(1 ... 13) + Array(15 ... 18))
        XCTAssertEqual(VFIOUserCommand.allCases.filter(\.isDecoded).map(\.rawValue), Array(1 ... 5) + [7, 8, 9, 10, 13])
        XCTAssertEqual(VFIOUserCommand.deviceGetRegionInfo.name, "DEVICE_GET_REGION_INFO")
        XCTAssertEqual(VFIOUserCommand.describe(14), "command 14")
        XCTAssertEqual(VFIOUserCommand.describe(2), "DMA_MAP")
        XCTAssertEqual(VFIOUserHeader(messageID: 7, command: 3, messageSize: 40, flags: 1).description,
                       "reply to DMA_UNMAP (id 7, size 40, flags 0x1, error 0)")
    }
}
