@testable import Wire
import XCTest

/// Every decoded command, as bytes laid out by hand from vfio-user.rst's
/// tables; most are the messages QEMU 11.1.3 sent in the observed run
/// (/work/shared/reference/qemu-vfio-user/messages.jsonl, ids given).
/// Each is decoded, and encoding the decoded value gives the bytes back.
final class VFIOUserCommandGoldenTests: XCTestCase {
    private func assertGolden(_ bytes: [UInt8], _ request: VFIOUserRequest, id: UInt16,
                              file: StaticString = #filePath, line: UInt = #line) {
        guard let message = vfioUserCommand(bytes, file: file, line: line) else { return }
        XCTAssertEqual(message.request, request, file: file, line: line)
        XCTAssertEqual(message.header.messageID, id, file: file, line: line)
        XCTAssertEqual(Int(message.header.messageSize), bytes.count, file: file, line: line)
        XCTAssertEqual(VFIOUserCodec.encodeCommand(request, messageID: id), bytes, "encoder disagrees with the golden bytes", file: file, line: line)
    }

    /// messages.jsonl id 0: VERSION 0.0, size 214, with QEMU's capabilities.
    func testQEMUVersion() {
        let bytes: [UInt8] = [0x00, 0x00, 0x01, 0x00, 0xD6, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x00] + Array(qemuVersionJSON.utf8) + [0x00]
        XCTAssertEqual(bytes.count, 214, "the size QEMU's header announced")
        guard let message = vfioUserCommand(bytes), case .version(let version) = message.request else {
            return XCTFail("not a VERSION")
        }
        XCTAssertEqual(version.major, 0)
        XCTAssertEqual(version.minor, 0)
        let expected = VFIOUserCapabilities(maxMessageFDs: 16, maxDataTransferSize: 1_048_576, pageSizes: 4096, maxDMAMaps: 65535,
                                            migration: .init(maxBitmapSize: 268_435_456, pageSize: 4096), writeMultiple: true)
        XCTAssertEqual(version.capabilities, expected)
        // Re-encoding writes the same capabilities in the serializer's key order.
        let again = VFIOUserCodec.encodeCommand(message.request, messageID: 0)
        XCTAssertEqual(vfioUserCommand(again)?.request, message.request)
    }

    /// VERSION with a JSON text written in the serializer's order (sorted keys, no spaces).
    func testVersionGolden() {
        let json = #"{"capabilities":{"max_data_xfer_size":1048576,"max_dma_maps":65535,"max_msg_fds":1,"pgsizes":4096,"write_multiple":false}}"#
        let bytes: [UInt8] = [0x05, 0x00, 0x01, 0x00, 0x8F, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x03, 0x00] + Array(json.utf8) + [0x00]
        XCTAssertEqual(bytes.count, 0x8F)
        assertGolden(bytes, .version(VFIOUserVersion(major: 0, minor: 3, capabilities: VFIOUserCapabilities())), id: 5)
    }

    /// VERSION without version data: the JSON is optional.
    func testVersionWithoutData() {
        let bytes: [UInt8] = [0x01, 0x00, 0x01, 0x00, 0x14, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x01, 0x00, 0x02, 0x00]
        assertGolden(bytes, .version(VFIOUserVersion(major: 1, minor: 2, capabilities: nil)), id: 1)
    }

    /// messages.jsonl id 1: all 256 MiB of guest RAM, read/write, at IOVA 0, fd offset 0.
    func testQEMUDMAMapOfGuestRAM() {
        let bytes: [UInt8] = [0x01, 0x00, 0x02, 0x00, 0x30, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x20, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
                              0, 0, 0, 0, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00]
        let map = VFIOUserDMAMap(flags: 3, offset: 0, iova: 0, size: 0x1000_0000)
        assertGolden(bytes, .dmaMap(map), id: 1)
        XCTAssertTrue(map.isReadable)
        XCTAssertTrue(map.isWriteable)
    }

    /// messages.jsonl id 2: the BIOS ROM, read-only, sent without an fd.
    func testQEMUDMAMapOfBIOS() {
        let bytes: [UInt8] = [0x02, 0x00, 0x02, 0x00, 0x30, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x20, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                              0, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0xFC, 0xFF, 0x00, 0x00, 0x00, 0x00,
                              0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]
        let map = VFIOUserDMAMap(flags: 1, offset: 0, iova: 0xFFFC_0000, size: 0x40000)
        assertGolden(bytes, .dmaMap(map), id: 2)
        XCTAssertTrue(map.isReadable)
        XCTAssertFalse(map.isWriteable)
    }

    /// messages.jsonl id 34: unmapping guest RAM, argsz 24.
    func testQEMUDMAUnmap() {
        let bytes: [UInt8] = [0x22, 0x00, 0x03, 0x00, 0x28, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                              0, 0, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00]
        assertGolden(bytes, .dmaUnmap(VFIOUserDMAUnmap(iova: 0, size: 0x1000_0000)), id: 34)
    }

    /// messages.jsonl id 3: size 32, only argsz set.
    func testQEMUDeviceGetInfo() {
        let bytes: [UInt8] = [0x03, 0x00, 0x04, 0x00, 0x20, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x10, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        assertGolden(bytes, .deviceGetInfo(VFIOUserDeviceInfo()), id: 3)
    }

    /// messages.jsonl id 10: region 7 (PCI config space), argsz 32.
    func testQEMUDeviceGetRegionInfo() {
        let bytes: [UInt8] = [0x0A, 0x00, 0x05, 0x00, 0x30, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x20, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0x07, 0x00, 0x00, 0x00, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        assertGolden(bytes, .deviceGetRegionInfo(VFIOUserRegionInfo(index: 7)), id: 10)
    }

    /// messages.jsonl id 11: the error IRQ (index 3).
    func testQEMUDeviceGetIRQInfo() {
        let bytes: [UInt8] = [0x0B, 0x00, 0x07, 0x00, 0x20, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x10, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0x03, 0x00, 0x00, 0x00, 0, 0, 0, 0]
        assertGolden(bytes, .deviceGetIRQInfo(VFIOUserIRQInfo(index: 3)), id: 11)
    }

    /// messages.jsonl id 20: INTx trigger to an eventfd (flags 0x24), size 36.
    func testQEMUSetIRQsEventFD() {
        let bytes: [UInt8] = [0x14, 0x00, 0x08, 0x00, 0x24, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x14, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,
                              0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x00]
        assertGolden(bytes, .deviceSetIRQs(VFIOUserIRQSet(flags: 0x24, index: 0, start: 0, count: 1)), id: 20)
    }

    /// DATA_BOOL|MASK on sub-indexes 2 and 3: one bool byte each, in argsz.
    func testSetIRQsBoolData() {
        let bytes: [UInt8] = [0x15, 0x00, 0x08, 0x00, 0x26, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x16, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
                              0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00]
        assertGolden(bytes, .deviceSetIRQs(VFIOUserIRQSet(flags: 0x0A, index: 2, start: 2, count: 2, boolData: [1, 0])), id: 21)
    }

    /// messages.jsonl id 12: 256 bytes of config space.
    func testQEMURegionRead() {
        let bytes: [UInt8] = [0x0C, 0x00, 0x09, 0x00, 0x20, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        assertGolden(bytes, .regionRead(VFIOUserRegionAccess(offset: 0, region: 7, count: 256)), id: 12)
    }

    /// messages.jsonl id 14: BAR sizing, 0xfffff800 to config offset 0x30.
    func testQEMURegionWrite() {
        let bytes: [UInt8] = [0x0E, 0x00, 0x0A, 0x00, 0x24, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
                              0x30, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
                              0x00, 0xF8, 0xFF, 0xFF]
        assertGolden(bytes, .regionWrite(VFIOUserRegionAccess(offset: 0x30, region: 7, count: 4), data: [0x00, 0xF8, 0xFF, 0xFF]), id: 14)
    }

    /// messages.jsonl id 25: the header alone.
    func testQEMUDeviceReset() {
        let bytes: [UInt8] = [0x19, 0x00, 0x0D, 0x00, 0x10, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
        assertGolden(bytes, .deviceReset, id: 25)
    }

    /// The no-reply flag travels in bit 4 and survives decoding.
    func testNoReplyFlag() {
        let bytes = VFIOUserCodec.encodeCommand(.deviceReset, messageID: 9, noReply: true)
        XCTAssertEqual(bytes, [0x09, 0x00, 0x0D, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0, 0, 0, 0])
        XCTAssertEqual(vfioUserCommand(bytes)?.header.noReply, true)
    }

    /// Encode then decode gives the request back, for every command.
    func testRoundTrips() {
        let requests: [VFIOUserRequest] = [
            .version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities(
                maxMessageFDs: 8, maxDataTransferSize: 65536, pageSizes: 0x20_1000, maxDMAMaps: 10,
                migration: .init(maxBitmapSize: 1 << 40, pageSize: 4096), writeMultiple: true))),
            .version(VFIOUserVersion(major: .max, minor: .max, capabilities: nil)),
            .dmaMap(VFIOUserDMAMap(flags: 2, offset: .max, iova: 0xFEF0_0000, size: 1 << 39)),
            .dmaUnmap(VFIOUserDMAUnmap(argsz: 4096, flags: 0, iova: .max - 0xFFF, size: 0x1000)),
            .deviceGetInfo(VFIOUserDeviceInfo(argsz: 64)),
            .deviceGetRegionInfo(VFIOUserRegionInfo(argsz: 256, index: 0)),
            .deviceGetIRQInfo(VFIOUserIRQInfo(index: 4)),
            .deviceSetIRQs(VFIOUserIRQSet(flags: 0x11, index: 0, start: 0, count: 0)),
            .deviceSetIRQs(VFIOUserIRQSet(flags: 0x22, index: 2, start: 0, count: 3, boolData: [1, 1, 0])),
            .regionRead(VFIOUserRegionAccess(offset: 0xFFFF_F000, region: 0, count: 4)),
            .regionWrite(VFIOUserRegionAccess(offset: 8, region: 0, count: 0), data: []),
            .regionWrite(VFIOUserRegionAccess(offset: 0, region: 1, count: 1000), data: (0 ..< 1000).map { UInt8($0 & 0xFF) }),
            .deviceReset,
        ]
        for (index, request) in requests.enumerated() {
            let bytes = VFIOUserCodec.encodeCommand(request, messageID: UInt16(index))
            guard let message = vfioUserCommand(bytes) else { continue }
            XCTAssertEqual(message.request, request)
            XCTAssertEqual(message.request.command.rawValue, message.header.command)
            XCTAssertEqual(message.header.messageID, UInt16(index))
        }
    }
}
