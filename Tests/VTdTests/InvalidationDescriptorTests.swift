import VTd
import XCTest

final class InvalidationDescriptorTests: XCTestCase {
    let caps = IOMMUCapabilities.make()

    func decode(_ low: UInt64, _ high: UInt64) -> InvalidationDescriptor? {
        try? InvalidationDescriptor.decode(low: low, high: high, caps: caps).get()
    }

    func testDecodesWhatLinuxQueues() {
        // Page-selective IOTLB, DID 5, 2 MiB at 0x200000 (AM 9), from qi_flush_iotlb's layout.
        XCTAssertEqual(decode(0x0000_0000_0005_0032, 0x200009),
                       .iotlb(.pages(domainID: 5, address: 0x200000, addressMask: 9, invalidationHint: false),
                              drainReads: false, drainWrites: false))
        XCTAssertEqual(decode(0x12, 0), .iotlb(.global, drainReads: false, drainWrites: false))
        XCTAssertEqual(decode(0x0007_0022 | 0xc0, 0), .iotlb(.domain(7), drainReads: true, drainWrites: true))
        XCTAssertEqual(decode(0x11, 0), .contextCache(.global))
        XCTAssertEqual(decode(0x0003_0021, 0), .contextCache(.domain(3)))
        XCTAssertEqual(decode(0x0002_0018_0000_0031, 0),
                       .contextCache(.device(domainID: 0, sourceID: SourceID(rawValue: 0x18), functionMask: 2)))
        XCTAssertEqual(decode(0x0000_0001_0000_0075, 0x1000),
                       .wait(statusWrite: true, interrupt: true, fence: true, statusData: 1, statusAddress: 0x1000))
        XCTAssertEqual(decode(0x0000_0018_0000_0003, 0x5000), .deviceTLB(sourceID: SourceID(rawValue: 0x18), address: 0x5000, sizeBit: false))
        XCTAssertEqual(decode(0x0000_0040_0000_0014, 0), .interruptEntryCache(global: false, index: 0x40, indexMask: 0))
    }

    func testLowAddressBitsUnderTheMaskAreIgnored() {
        // Spec 6.5.2.3: ADDR is aligned to 2^AM pages by the hardware.
        XCTAssertEqual(decode(0x0001_0032, 0x203001),
                       .iotlb(.pages(domainID: 1, address: 0x202000, addressMask: 1, invalidationHint: false),
                              drainReads: false, drainWrites: false))
    }

    func testEncodeDecodeRoundTrip() {
        let all: [InvalidationDescriptor] = [
            .contextCache(.global), .contextCache(.domain(9)),
            .contextCache(.device(domainID: 4, sourceID: SourceID(rawValue: 0x1234), functionMask: 3)),
            .iotlb(.global, drainReads: true, drainWrites: false), .iotlb(.domain(65535), drainReads: false, drainWrites: true),
            .iotlb(.pages(domainID: 2, address: 0x7fff_ffff_f000, addressMask: 0, invalidationHint: true), drainReads: false, drainWrites: false),
            .deviceTLB(sourceID: SourceID(rawValue: 0x100), address: 0x1000, sizeBit: true),
            .interruptEntryCache(global: true, index: 0, indexMask: 0),
            .wait(statusWrite: true, interrupt: false, fence: false, statusData: 0xdead_beef, statusAddress: 0x12340),
        ]
        for d in all {
            let (lo, hi) = d.encoded
            XCTAssertEqual(decode(lo, hi), d, "\(d)")
        }
    }

    func testReservedFieldsAreRefused() {
        let cases: [(UInt64, UInt64, String)] = [
            (0x11 | 1 << 6, 0, "context-cache"),            // bit 6 reserved
            (0x11, 1, "context-cache"),                     // high half reserved
            (0x32 | 1 << 8, 0, "IOTLB"),                    // bit 8 reserved
            (0x32 | 1 << 40, 0, "IOTLB"),                   // bits 63:32 reserved
            (0x32, 1 << 7, "IOTLB"),                        // high bits 11:7 reserved
            (0x15 | 1 << 8, 0, "invalidation-wait"),
            (0x05, 1, "invalidation-wait"),
            (0x04 | 1 << 20, 0, "interrupt-entry-cache"),
            (0x03 | 1 << 8, 0, "device-TLB"),
        ]
        for (lo, hi, kind) in cases {
            guard case let .failure(error) = InvalidationDescriptor.decode(low: lo, high: hi, caps: caps) else {
                return XCTFail("0x\(String(lo, radix: 16)) 0x\(String(hi, radix: 16)) was accepted")
            }
            XCTAssertTrue(error.reason.contains(kind), error.description)
            XCTAssertTrue(error.reason.contains("reserved"), error.description)
        }
    }

    func testUnknownTypesGranularityZeroAndHugeMasksAreRefused() {
        for (lo, hi) in [(UInt64(0), UInt64(0)), (6, 0), (7, 0), (0x02, 0), (0x01, 0), (0x0e00 | 1, 0)] {
            XCTAssertNil(decode(lo, hi), "0x\(String(lo, radix: 16))")
        }
        // AM above CAP.MAMV (18 here).
        guard case let .failure(error) = InvalidationDescriptor.decode(low: 0x0001_0032, high: 19, caps: caps) else {
            return XCTFail("AM 19 accepted")
        }
        XCTAssertTrue(error.reason.contains("MAMV"))
        XCTAssertNotNil(decode(0x0001_0032, 18))
    }
}
