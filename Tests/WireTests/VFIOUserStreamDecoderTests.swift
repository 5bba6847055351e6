import Wire
import XCTest

/// Cutting a vfio-user byte stream into messages, with their descriptors.
final class VFIOUserStreamDecoderTests: XCTestCase {
    private let map = VFIOUserCodec.encodeCommand(.dmaMap(VFIOUserDMAMap(flags: 3, offset: 0, iova: 0x1000, size: 0x1000)), messageID: 1)
    private let info = VFIOUserCodec.encodeCommand(.deviceGetInfo(VFIOUserDeviceInfo()), messageID: 2)

    func testMessagesSplitAnywhereComeOutWholeWithTheirDescriptors() {
        var decoder = VFIOUserStreamDecoder<Int32>()
        let stream = info + map
        // Byte by byte; the descriptor arrives with the map's last byte.
        for (i, byte) in stream.enumerated() {
            decoder.append([byte], fds: i == stream.count - 1 ? [7] : [])
        }
        let first = try? decoder.next()?.get()
        XCTAssertEqual(first?.header.messageID, 2)
        XCTAssertEqual(first?.fds, [])
        let second = try? decoder.next()?.get()
        XCTAssertEqual(second?.bytes, map)
        XCTAssertEqual(second?.fds, [7])
        XCTAssertNil(decoder.next())
    }

    func testOneReadHoldingAnEarlierMessageAndTheDescriptorCarryingOne() {
        var decoder = VFIOUserStreamDecoder<Int32>()
        decoder.append(info + map, fds: [9])
        XCTAssertEqual((try? decoder.next()?.get())?.fds, [])
        XCTAssertEqual((try? decoder.next()?.get())?.fds, [9])
    }

    func testAnUnframeableSizePoisonsTheStreamOnce() {
        var decoder = VFIOUserStreamDecoder<Int32>()
        var bad = info
        bad[4] = 4
        decoder.append(bad + map, fds: [3])
        guard case let .failure(error)? = decoder.next() else { return XCTFail("accepted a 4-byte message") }
        XCTAssertEqual(error.reason, .truncated)
        XCTAssertTrue(error.message.contains("cannot be resynchronised"), error.message)
        XCTAssertNil(decoder.next())
        XCTAssertEqual(decoder.takeAllFDs(), [3])
        var huge = info
        huge.replaceSubrange(4..<8, with: [0, 0, 0, 0x10])
        var other = VFIOUserStreamDecoder<Int32>()
        other.append(huge)
        guard case let .failure(tooLarge)? = other.next() else { return XCTFail("accepted a 256 MiB message") }
        XCTAssertEqual(tooLarge.reason, .tooLarge)
    }
}
