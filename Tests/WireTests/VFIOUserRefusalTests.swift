@testable import Wire
import VTd
import XCTest

/// Each refusal of the vfio-user decoder: its reason, the errno the error
/// reply would carry, and a message that names what was wrong.
final class VFIOUserRefusalTests: XCTestCase {
    /// QEMU's DMA_MAP of guest RAM (messages.jsonl id 1), payload only.
    private let mapPayload: [UInt8] = le(UInt32(32)) + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(0)) + le(UInt64(0x1000_0000))

    private func refuse(_ bytes: [UInt8], limits: VFIOUserLimits = VFIOUserLimits(), _ reason: VFIOUserWireError.Reason,
                        mentions words: [String], file: StaticString = #filePath, line: UInt = #line) -> VFIOUserWireError? {
        guard let error = vfioUserRefusal(VFIOUserCodec.decodeCommand(bytes, limits: limits), file: file, line: line) else { return nil }
        XCTAssertEqual(error.reason, reason, "\(error)", file: file, line: line)
        for word in words {
            XCTAssertTrue(error.message.contains(word), "message lacks \"\(word)\": \(error.message)", file: file, line: line)
        }
        return error
    }

    func testShorterThanAHeader() {
        let error = refuse([0x01, 0x00, 0x02], .truncated, mentions: ["3 bytes", "16-byte header"])
        XCTAssertNil(error?.header)
        XCTAssertEqual(error?.errno, 22)
    }

    func testMessageSizeBelowTheHeader() {
        let error = refuse(vfioUserHeaderBytes(id: 1, command: 13, size: 15), .truncated, mentions: ["message size 15", "16-byte header"])
        XCTAssertEqual(error?.header?.messageID, 1)
    }

    func testShorterThanTheHeaderSays() {
        // QEMU's DMA_MAP, cut 8 bytes short.
        let bytes = vfioUserHeaderBytes(id: 1, command: 2, size: 48) + mapPayload.dropLast(8)
        _ = refuse(bytes, .truncated, mentions: ["says 48 bytes", "only 40 arrived"])
    }

    func testLongerThanTheHeaderSays() {
        let bytes = vfioUserHeaderBytes(id: 1, command: 2, size: 48) + mapPayload + [0]
        _ = refuse(bytes, .trailingBytes, mentions: ["49 bytes", "says 48"])
    }

    func testShorterThanTheCommandsFixedPart() {
        // Consistent with its own header, but 8 bytes short of DMA_MAP's layout.
        let bytes = vfioUserHeaderBytes(id: 1, command: 2, size: 40) + mapPayload.dropLast(8)
        _ = refuse(bytes, .badLength, mentions: ["DMA_MAP", "24 bytes", "exactly 32", "must be 48"])
        _ = refuse(vfioUserHeaderBytes(id: 1, command: 1, size: 18) + [0, 0], .badLength, mentions: ["VERSION", "4-byte fixed part"])
        _ = refuse(vfioUserHeaderBytes(id: 1, command: 8, size: 32) + [UInt8](repeating: 0, count: 16), .badLength,
                   mentions: ["DEVICE_SET_IRQS", "20-byte fixed part"])
        _ = refuse(vfioUserHeaderBytes(id: 1, command: 10, size: 24) + [UInt8](repeating: 0, count: 8), .badLength,
                   mentions: ["REGION_WRITE", "16-byte fixed part"])
        _ = refuse(vfioUserHeaderBytes(id: 1, command: 4, size: 24) + le(UInt32(16)) + le(UInt32(0)), .badLength,
                   mentions: ["DEVICE_GET_INFO", "exactly 16"])
        _ = refuse(vfioUserHeaderBytes(id: 1, command: 13, size: 20) + le(UInt32(0)), .badLength, mentions: ["no payload"])
    }

    func testWrongArgsz() {
        let map = vfioUserHeaderBytes(id: 1, command: 2, size: 48) + le(UInt32(24)) + mapPayload.dropFirst(4)
        _ = refuse(map, .badArgsz, mentions: ["argsz is 24", "must be 32"])
        let unmap = vfioUserHeaderBytes(id: 2, command: 3, size: 40) + le(UInt32(16)) + le(UInt32(0)) + le(UInt64(0)) + le(UInt64(0x1000))
        _ = refuse(unmap, .badArgsz, mentions: ["argsz is 16", "at least 24"])
        let info = vfioUserHeaderBytes(id: 3, command: 4, size: 32) + le(UInt32(8)) + [UInt8](repeating: 0, count: 12)
        _ = refuse(info, .badArgsz, mentions: ["argsz is 8", "at least 16"])
        let region = vfioUserHeaderBytes(id: 4, command: 5, size: 48) + le(UInt32(31)) + [UInt8](repeating: 0, count: 28)
        _ = refuse(region, .badArgsz, mentions: ["argsz is 31", "at least 32"])
        let irq = vfioUserHeaderBytes(id: 5, command: 7, size: 32) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(3)) + le(UInt32(0))
        _ = refuse(irq, .badArgsz, mentions: ["argsz is 0", "at least 16"])
        // SET_IRQS: argsz must be the payload's size, here 20, not 24.
        let set = vfioUserHeaderBytes(id: 6, command: 8, size: 36) + le(UInt32(24)) + le(UInt32(0x24)) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(1))
        _ = refuse(set, .badArgsz, mentions: ["argsz is 24", "must be 20"])
    }

    func testUnknownAndUnsupportedCommands() {
        for command: UInt16 in [0, 14, 19, 0xFFFF] {
            let error = refuse(vfioUserHeaderBytes(id: 7, command: command, size: 16), .unknownCommand, mentions: ["command \(command)", "not assigned"])
            XCTAssertEqual(error?.errno, 95)
            XCTAssertEqual(error?.header?.command, command)
        }
        for command in VFIOUserCommand.allCases where !command.isDecoded {
            let error = refuse(vfioUserHeaderBytes(id: 7, command: command.rawValue, size: 16), .unsupportedCommand, mentions: [command.name, "not supported"])
            XCTAssertEqual(error?.errno, 95)
        }
    }

    func testOversizedReadAndWrite() {
        let limits = VFIOUserLimits(maxDataTransfer: 4096)
        let read = vfioUserHeaderBytes(id: 1, command: 9, size: 32) + le(UInt64(0)) + le(UInt32(0)) + le(UInt32(4097))
        let error = refuse(read, limits: limits, .tooLarge, mentions: ["count 4097", "max_data_xfer_size 4096"])
        XCTAssertEqual(error?.errno, 7)
        let atLimit = vfioUserHeaderBytes(id: 1, command: 9, size: 32) + le(UInt64(0)) + le(UInt32(0)) + le(UInt32(4096))
        XCTAssertNotNil(vfioUserCommand(atLimit, limits: limits), "a count equal to the limit is allowed")
        // A write whose count is over the limit is refused on the count, before its data is looked at.
        let write = vfioUserHeaderBytes(id: 2, command: 10, size: 36) + le(UInt64(0)) + le(UInt32(0)) + le(UInt32(4097)) + [1, 2, 3, 4]
        _ = refuse(write, limits: limits, .tooLarge, mentions: ["count 4097"])
        // A whole message beyond what any allowed transfer needs.
        let huge = vfioUserHeaderBytes(id: 3, command: 10, size: UInt32(16 + 16 + 4097))
        XCTAssertEqual(VFIOUserCodec.checkAnnouncedSize(VFIOUserHeader.decode(huge), limits: limits)?.reason, .tooLarge)
        XCTAssertNil(VFIOUserCodec.checkAnnouncedSize(VFIOUserHeader(messageID: 0, command: 10, messageSize: UInt32(16 + 16 + 4096)), limits: limits))
        _ = refuse(huge, limits: limits, .tooLarge, mentions: ["message size 4129"])
    }

    func testWriteCountDisagreesWithItsData() {
        let write = vfioUserHeaderBytes(id: 2, command: 10, size: 36) + le(UInt64(0)) + le(UInt32(0)) + le(UInt32(8)) + [1, 2, 3, 4]
        _ = refuse(write, .badLength, mentions: ["20 bytes", "exactly 24", "count 8"])
        let read = vfioUserHeaderBytes(id: 2, command: 9, size: 36) + le(UInt64(0)) + le(UInt32(0)) + le(UInt32(4)) + [1, 2, 3, 4]
        _ = refuse(read, .badLength, mentions: ["REGION_READ", "exactly 16"])
    }

    func testFlagsAndMessageType() {
        let reset = { (flags: UInt32) in vfioUserHeaderBytes(id: 1, command: 13, size: 16, flags: flags) }
        _ = refuse(reset(0x40), .malformed, mentions: ["undefined bits 0x40"])
        _ = refuse(reset(0x2), .malformed, mentions: ["message type 2"])
        _ = refuse(reset(0x1), .wrongType, mentions: ["a command was expected"])
        _ = refuse(reset(0x20), .malformed, mentions: ["error flag"])
        guard let error = vfioUserRefusal(VFIOUserCodec.decodeReply(reset(0))) else { return }
        XCTAssertEqual(error.reason, .wrongType)
        guard let quiet = vfioUserRefusal(VFIOUserCodec.decodeReply(reset(0x11))) else { return }
        XCTAssertEqual(quiet.reason, .malformed)
        XCTAssertTrue(quiet.message.contains("no-reply flag"), quiet.message)
    }

    func testSetIRQsFlagsAndBoolData() {
        let set = { (flags: UInt32, count: UInt32, data: [UInt8]) -> [UInt8] in
            vfioUserHeaderBytes(id: 1, command: 8, size: UInt32(36 + data.count))
                + le(UInt32(20 + data.count)) + le(flags) + le(UInt32(0)) + le(UInt32(0)) + le(count) + data
        }
        for flags: UInt32 in [0x20, 0x04, 0x25, 0x34, 0x64, 0] {
            _ = refuse(set(flags, 1, []), .malformed, mentions: ["flags \(hex(flags))", "exactly one data type"])
        }
        _ = refuse(set(0x22, 3, [1, 1]), .badLength, mentions: ["22 bytes", "exactly 23", "count 3"])
        _ = refuse(set(0x24, 1, [1]), .badLength, mentions: ["only DATA_BOOL carries data"])
    }

    func testReplyRefusals() {
        // An error reply carries nothing after its header.
        let error = vfioUserHeaderBytes(id: 1, command: 2, size: 20, flags: 0x21, error: 22) + [0, 0, 0, 0]
        XCTAssertEqual(vfioUserRefusal(VFIOUserCodec.decodeReply(error))?.reason, .badLength)
        let map = vfioUserHeaderBytes(id: 1, command: 2, size: 20, flags: 1) + [0, 0, 0, 0]
        XCTAssertEqual(vfioUserRefusal(VFIOUserCodec.decodeReply(map))?.reason, .badLength)
        let read = vfioUserHeaderBytes(id: 1, command: 9, size: 34, flags: 1) + le(UInt64(0)) + le(UInt32(7)) + le(UInt32(4)) + [1, 2]
        XCTAssertEqual(vfioUserRefusal(VFIOUserCodec.decodeReply(read))?.reason, .badLength)
        let region = vfioUserHeaderBytes(id: 1, command: 5, size: 40, flags: 1) + [UInt8](repeating: 0, count: 24)
        XCTAssertEqual(vfioUserRefusal(VFIOUserCodec.decodeReply(region))?.reason, .badLength)
        let unknown = vfioUserHeaderBytes(id: 1, command: 14, size: 16, flags: 0x21, error: 95)
        XCTAssertEqual(vfioUserRefusal(VFIOUserCodec.decodeReply(unknown))?.reason, .unknownCommand)
    }
}
