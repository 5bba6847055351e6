@testable import Wire
import XCTest

/// Every reply, as bytes laid out by hand from vfio-user.rst's tables
/// (type bits 0-3 = 1 marks a reply); the error reply is the header alone.
final class VFIOUserReplyTests: XCTestCase {
    private func assertGolden(_ bytes: [UInt8], _ reply: VFIOUserReply, id: UInt16,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(VFIOUserCodec.encodeReply(reply, messageID: id), bytes, "encoder disagrees with the golden bytes", file: file, line: line)
        guard let message = vfioUserReply(bytes, file: file, line: line) else { return }
        XCTAssertEqual(message.outcome, .success(reply), file: file, line: line)
        XCTAssertEqual(message.header.messageID, id, file: file, line: line)
        XCTAssertTrue(message.header.isReply, file: file, line: line)
    }

    func testVersionReply() {
        let json = #"{"capabilities":{"max_data_xfer_size":1048576,"max_dma_maps":65535,"max_msg_fds":1,"pgsizes":4096,"write_multiple":false}}"#
        let bytes: [UInt8] = [0x00, 0x00, 0x01, 0x00, 0x8F, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x00] + Array(json.utf8) + [0x00]
        assertGolden(bytes, .version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities())), id: 0)
    }

    func testEmptyReplies() {
        assertGolden([0x01, 0x00, 0x02, 0x00, 0x10, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0], .dmaMap, id: 1)
        assertGolden([0x14, 0x00, 0x08, 0x00, 0x10, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0], .deviceSetIRQs, id: 20)
        assertGolden([0x19, 0x00, 0x0D, 0x00, 0x10, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0], .deviceReset, id: 25)
    }

    func testDMAUnmapReplyEchoesTheEntry() {
        let bytes: [UInt8] = [0x22, 0x00, 0x03, 0x00, 0x28, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x18, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x10, 0, 0, 0, 0, 0, 0,
                              0x00, 0x10, 0, 0, 0, 0, 0, 0]
        assertGolden(bytes, .dmaUnmap(VFIOUserDMAUnmap(iova: 0x1000, size: 0x1000)), id: 34)
    }

    /// edu's answer: PCI (bit 1) without RESET, 9 regions, 5 IRQ types (README of the observed run).
    func testDeviceInfoReply() {
        let bytes: [UInt8] = [0x03, 0x00, 0x04, 0x00, 0x20, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x10, 0, 0, 0, 0x02, 0, 0, 0, 0x09, 0, 0, 0, 0x05, 0, 0, 0]
        assertGolden(bytes, .deviceGetInfo(VFIOUserDeviceInfo(flags: VFIOUserDeviceInfo.flagPCI, regionCount: 9, irqCount: 5)), id: 3)
    }

    /// BAR0 of 1 MiB, read/write/mmap, at fd offset 0 (messages.jsonl id 4's answer).
    func testRegionInfoReply() {
        let bytes: [UInt8] = [0x04, 0x00, 0x05, 0x00, 0x30, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x20, 0, 0, 0, 0x07, 0, 0, 0, 0x00, 0, 0, 0, 0x00, 0, 0, 0,
                              0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0]
        let info = VFIOUserRegionInfo(flags: VFIOUserRegionInfo.flagRead | VFIOUserRegionInfo.flagWrite | VFIOUserRegionInfo.flagMmap,
                                      index: 0, size: 0x10_0000)
        assertGolden(bytes, .deviceGetRegionInfo(info, capabilities: []), id: 4)
    }

    /// A region info with a capability chain after the 32 bytes: argsz covers both.
    func testRegionInfoReplyWithCapabilities() {
        let chain: [UInt8] = [0x01, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0]
        let bytes: [UInt8] = [0x04, 0x00, 0x05, 0x00, 0x40, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x30, 0, 0, 0, 0x0F, 0, 0, 0, 0x02, 0, 0, 0, 0x20, 0, 0, 0,
                              0x00, 0x40, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x00, 0x02, 0, 0, 0] + chain
        let info = VFIOUserRegionInfo(argsz: 48, flags: 0x0F, index: 2, capabilityOffset: 32, size: 0x4000, offset: 0x2_0000_0000)
        assertGolden(bytes, .deviceGetRegionInfo(info, capabilities: chain), id: 4)
    }

    func testIRQInfoReply() {
        let bytes: [UInt8] = [0x0B, 0x00, 0x07, 0x00, 0x20, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x10, 0, 0, 0, 0x07, 0, 0, 0, 0x00, 0, 0, 0, 0x01, 0, 0, 0]
        assertGolden(bytes, .deviceGetIRQInfo(VFIOUserIRQInfo(flags: 7, index: 0, count: 1)), id: 11)
    }

    /// The first 8 bytes of edu's config space from messages.jsonl id 12's data.
    func testRegionReadReply() {
        let data: [UInt8] = [0x34, 0x12, 0xE8, 0x11, 0x00, 0x00, 0x00, 0x00]
        let bytes: [UInt8] = [0x0C, 0x00, 0x09, 0x00, 0x28, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0x08, 0, 0, 0] + data
        assertGolden(bytes, .regionRead(VFIOUserRegionAccess(offset: 0, region: 7, count: 8), data: data), id: 12)
    }

    func testRegionWriteReply() {
        let bytes: [UInt8] = [0x0E, 0x00, 0x0A, 0x00, 0x20, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
                              0x30, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0x04, 0, 0, 0]
        assertGolden(bytes, .regionWrite(VFIOUserRegionAccess(offset: 0x30, region: 7, count: 4)), id: 14)
    }

    /// EINVAL (22) for DEVICE_GET_IRQ_INFO, as the kernel answers for edu's index 3.
    func testErrorReply() {
        let bytes: [UInt8] = [0x0B, 0x00, 0x07, 0x00, 0x10, 0, 0, 0, 0x21, 0, 0, 0, 0x16, 0, 0, 0]
        XCTAssertEqual(VFIOUserCodec.encodeErrorReply(messageID: 11, command: 7, errno: 22), bytes)
        guard let message = vfioUserReply(bytes) else { return }
        XCTAssertEqual(message.outcome, .error(errno: 22))
        XCTAssertTrue(message.header.isError)
        // The spec allows an error reply with errno 0.
        XCTAssertEqual(vfioUserReply([0x0B, 0x00, 0x07, 0x00, 0x10, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0])?.outcome, .error(errno: 0))
    }

    /// The error reply for a refusal echoes the refused message's ID and command.
    func testErrorReplyForARefusal() {
        let unknown = vfioUserHeaderBytes(id: 0x4242, command: 14, size: 16)
        guard let error = vfioUserRefusal(VFIOUserCodec.decodeCommand(unknown)) else { return }
        XCTAssertEqual(VFIOUserCodec.encodeErrorReply(for: error),
                       [0x42, 0x42, 0x0E, 0x00, 0x10, 0, 0, 0, 0x21, 0, 0, 0, 0x5F, 0, 0, 0], "EOPNOTSUPP (95)")
        // No header, no reply: the framing is lost and the socket closes.
        guard let short = vfioUserRefusal(VFIOUserCodec.decodeCommand([1, 2, 3])) else { return }
        XCTAssertNil(VFIOUserCodec.encodeErrorReply(for: short))
        // A command that asked for no reply gets none, even refused.
        let quiet = vfioUserHeaderBytes(id: 1, command: 13, size: 17, flags: VFIOUserHeader.noReplyFlag) + [0]
        guard let refused = vfioUserRefusal(VFIOUserCodec.decodeCommand(quiet)) else { return }
        XCTAssertEqual(refused.reason, .badLength)
        XCTAssertNil(VFIOUserCodec.encodeErrorReply(for: refused))
    }

    func testReplyRoundTrips() {
        let replies: [VFIOUserReply] = [
            .version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities(maxMessageFDs: 16, writeMultiple: false))),
            .version(VFIOUserVersion(major: 0, minor: 0, capabilities: nil)),
            .dmaMap, .deviceSetIRQs, .deviceReset,
            .dmaUnmap(VFIOUserDMAUnmap(argsz: 24, flags: 0, iova: 0xFE00_0000, size: 0x10_0000)),
            .deviceGetInfo(VFIOUserDeviceInfo(flags: 3, regionCount: 9, irqCount: 5)),
            .deviceGetRegionInfo(VFIOUserRegionInfo(argsz: 40, flags: 0xF, index: 1, capabilityOffset: 32, size: 1, offset: 2),
                                 capabilities: [1, 2, 3, 4, 5, 6, 7, 8]),
            .deviceGetIRQInfo(VFIOUserIRQInfo(flags: 9, index: 4, count: 1)),
            .regionRead(VFIOUserRegionAccess(offset: 4, region: 7, count: 0), data: []),
            .regionRead(VFIOUserRegionAccess(offset: 0, region: 7, count: 256), data: Array(repeating: 0xA5, count: 256)),
            .regionWrite(VFIOUserRegionAccess(offset: 0x30, region: 7, count: 4)),
        ]
        for (index, reply) in replies.enumerated() {
            let bytes = VFIOUserCodec.encodeReply(reply, messageID: UInt16(index))
            XCTAssertEqual(vfioUserReply(bytes)?.outcome, .success(reply))
            XCTAssertEqual(Int(VFIOUserHeader.decode(bytes[0 ..< 16]).messageSize), bytes.count)
        }
    }
}
