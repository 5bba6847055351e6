@testable import Wire
import VTd
import VTdGuest
import XCTest

/// Hand-written byte layouts of PROTOCOL.md §1.2 and §1.6: what a VMM
/// written from the document alone would send.
final class EventRequestGoldenTests: XCTestCase {
    /// Encodes, compares with the golden bytes, and decodes them back.
    func check(_ request: EventRequest, tag: UInt64, fdCount: Int = 0, _ golden: [UInt8],
               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(EventCodec.encodeRequest(request, tag: tag), golden, "encoding", file: file, line: line)
        XCTAssertEqual(try decodeFrame(golden, fdCount: fdCount).get(), request, "decoding", file: file, line: line)
    }

    func testHello() {
        check(.hello(version: 1, flags: 1, cap: 0x1122_3344_5566_7788, ecap: 0xf5e), tag: 0x0102_0304_0506_0708, [
            0x01, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, // type 1, length 24
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // tag
            0x01, 0x00, 0x00, 0x00, // version 1
            0x01, 0x00, 0x00, 0x00, // flags: notifier mode
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // cap
            0x5e, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ecap
        ])
        XCTAssertEqual(HelloFlags.notifierMode.rawValue, 1)
    }

    func testSetMemTable() {
        let regions = [
            MemoryRegionDescriptor(gpa: 0, size: 0x8000_0000, offset: 0),
            MemoryRegionDescriptor(gpa: 0x1_0000_0000, size: 0x4000_0000, offset: 0x8000_0000),
        ]
        check(.setMemTable(regions), tag: 2, fdCount: 2, [
            0x02, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, // type 2, length 56
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tag 2
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 2, reserved
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] gpa 0
            0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, // [0] size 2 GiB
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] offset 0
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // [1] gpa 4 GiB
            0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, // [1] size 1 GiB
            0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, // [1] offset 2 GiB
        ])
    }

    func testSetRootTableAndTranslation() {
        check(.setRootTable(0x1234_5000), tag: 3, [
            0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x50, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00,
        ])
        check(.setRootTable(0), tag: 3, [
            0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ])
        check(.setTranslation(true), tag: 4, [
            0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ])
        check(.setTranslation(false), tag: 4, [
            0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ])
    }

    func testEmptyRequests() {
        check(.reset, tag: 0xabcd, [0x05, 0, 0, 0, 0, 0, 0, 0, 0xcd, 0xab, 0, 0, 0, 0, 0, 0])
        check(.ready, tag: 0, [0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        check(.ping, tag: 1, [0x09, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    }

    func testInvalidate() {
        let words = [
            InvalidationWords(low: 0x0000_0000_0005_0032, high: 0x20_0009), // page-selective IOTLB
            InvalidationWords(low: 0x0000_0001_0000_0075, high: 0x1000),    // wait
        ]
        check(.invalidate(words), tag: 0xffff_ffff_ffff_fffe, [
            0x07, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, // type 7, length 40
            0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // tag
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 2, reserved
            0x32, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] low
            0x09, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] high
            0x75, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // [1] low
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1] high
        ])
    }

    func testNotify() {
        let entries = [
            NotifierEntry(iova: 0x20_0000, translatedAddress: 0x1_4000_0000, addressMask: 0x1f_ffff, sourceID: 0x0018, permission: .readWrite),
            NotifierEntry(iova: 0x7000, translatedAddress: 0, addressMask: 0xfff, sourceID: 0x0100, permission: []),
        ]
        check(.notify(entries), tag: 9, [
            0x08, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, // type 8, length 72
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tag 9
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 2, reserved
            0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] iova
            0x00, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x00, // [0] translated_addr
            0xff, 0xff, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] address_mask (2 MiB)
            0x18, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, // [0] source 00:03.0, rw, reserved
            0x00, 0x70, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1] iova
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1] translated_addr
            0xff, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1] address_mask (4 KiB)
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1] source 01:00.0, unmap
        ])
        XCTAssertEqual(entries[0].source.description, "00:03.0")
        XCTAssertTrue(entries[0].permission == .readWrite && !entries[0].isUnmap)
        XCTAssertTrue(entries[1].isUnmap)
    }

    /// The permission byte of a NOTIFY entry (PROTOCOL.md §1.6, entry offset
    /// 26) is the one permission type's bits: 0 unmap, 1 read, 2 write, 3
    /// both, which are also VT-d's R and W; any other byte is refused.
    func testNotifyPermissionByteIsTheVTdBits() {
        func frame(_ byte: UInt8) -> [UInt8] {
            var bytes = EventCodec.encodeRequest(.notify([NotifierEntry(iova: 0x1000, translatedAddress: 0x2000, addressMask: 0xfff,
                                                                        sourceID: 0x18, permission: .readWrite)]), tag: 1)
            bytes[FrameHeader.size + 8 + 26] = byte
            return bytes
        }
        let cases: [(DMAPermission, UInt8)] = [([], 0), (.read, 1), (.write, 2), (.readWrite, 3)]
        for (permission, byte) in cases {
            let entry = NotifierEntry(iova: 0x1000, translatedAddress: 0x2000, addressMask: 0xfff, sourceID: 0x18, permission: permission)
            XCTAssertEqual(EventCodec.encodeRequest(.notify([entry]), tag: 1), frame(byte), "\(permission)")
            XCTAssertEqual(try decodeFrame(frame(byte)).get(), .notify([entry]), "byte \(byte)")
            XCTAssertEqual(SecondLevelEntry(rawValue: 0x5000 | UInt64(byte)).permission, permission, "R/W bits \(byte)")
        }
        for byte in UInt8(4) ... 255 {
            guard case .failure = decodeFrame(frame(byte)) else { return XCTFail("permission byte \(byte) accepted") }
        }
    }

    func testRandomRoundTrips() {
        var rng = SplitMix64(seed: 7)
        for _ in 0 ..< 50 {
            let n = Int.random(in: 1 ... 64, using: &rng)
            var regions: [MemoryRegionDescriptor] = []
            var gpa: UInt64 = 0
            for _ in 0 ..< n {
                let size = UInt64.random(in: 1 ... 1024, using: &rng) << 12
                regions.append(MemoryRegionDescriptor(gpa: gpa, size: size, offset: UInt64.random(in: 0 ... 1 << 20, using: &rng) << 12))
                gpa += size + (UInt64.random(in: 0 ... 16, using: &rng) << 12)
            }
            let words = (0 ..< Int.random(in: 1 ... 200, using: &rng)).map { _ in InvalidationWords(low: rng.next(), high: rng.next()) }
            let entries = (0 ..< Int.random(in: 1 ... 100, using: &rng)).map { _ -> NotifierEntry in
                let shift = UInt64.random(in: 12 ... 40, using: &rng)
                let mask = (UInt64(1) << shift) - 1
                return NotifierEntry(iova: rng.next() & ~mask, translatedAddress: rng.next() & ~mask, addressMask: mask,
                                     sourceID: UInt16.random(in: 0 ... .max, using: &rng), permission: DMAPermission(rawValue: UInt8.random(in: 0 ... 3, using: &rng)))
            }
            let requests: [(EventRequest, Int)] = [
                (.hello(version: 1, flags: UInt32.random(in: 0 ... 1, using: &rng), cap: rng.next(), ecap: rng.next()), 0),
                (.setMemTable(regions), n),
                (.setRootTable(rng.next() & ~0xfff), 0),
                (.invalidate(words), 0),
                (.notify(entries), 0),
            ]
            for (request, fds) in requests {
                let tag = rng.next()
                let frame = EventCodec.encodeRequest(request, tag: tag)
                XCTAssertEqual(FrameHeader.decode(frame[..<16]).tag, tag)
                XCTAssertEqual(FrameHeader.decode(frame[..<16]).type, request.type.rawValue)
                XCTAssertEqual(try decodeFrame(frame, fdCount: fds).get(), request)
                XCTAssertEqual(request.expectedFDCount, fds)
            }
        }
    }

    func testDecodeAcceptsARawBufferAndAFrame() throws {
        let frame = EventCodec.encodeRequest(.setRootTable(0x5000), tag: 1)
        let viaPointer = payload(of: frame).withUnsafeBytes { EventCodec.decodeRequest(type: 3, payload: $0, fdCount: 0) }
        XCTAssertEqual(try viaPointer.get(), .setRootTable(0x5000))
        let decoded = FrameDecoder<Int32>.Frame(header: FrameHeader.decode(frame[..<16]), payload: payload(of: frame))
        XCTAssertEqual(try EventCodec.decodeRequest(decoded).get(), .setRootTable(0x5000))
    }
}
