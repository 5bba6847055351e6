import VTdBridgeTestSupport
import XCTest
@testable import VFIO

/// VFIO_IOMMU_GET_INFO replies built by hand, well-formed and malformed.
final class CapabilityParsingTests: XCTestCase {
    private func parse(_ bytes: [UInt8], fallback: UInt64 = 0x1000) throws(VFIOError) -> IOMMUInfo {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(VFIOError) -> IOMMUInfo in
                try IOMMUInfo(getInfoReply: raw, fallbackPageSizes: fallback, subject: "test")
            }
        }.get()
    }

    private func assertMalformed(_ bytes: [UInt8], _ fragment: String, line: UInt = #line) {
        do {
            let info = try parse(bytes)
            XCTFail("parsed a malformed reply: \(info)", line: line)
        } catch {
            XCTAssertEqual(error.operation, "VFIO_IOMMU_GET_INFO", line: line)
            XCTAssertEqual(error.errno, 0, line: line)
            XCTAssertTrue(error.detail?.contains(fragment) == true,
                          "detail '\(error.detail ?? "nil")' lacks '\(fragment)'", line: line)
        }
    }

    func testWellFormedChain() throws {
        let chain = InfoReply.chain(iovaRanges: [(0, 0xFEDF_FFFF), (0xFEF0_0000, 0x7F_FFFF_FFFF)],
                                    dmaAvailable: 65000, startingAt: 24)
        let info = try parse(InfoReply.full(pageSizes: 0x4020_1000, chain: chain))
        XCTAssertEqual(info.pageSizes, 0x4020_1000)
        XCTAssertEqual(info.iovaRanges, [IOVARange(start: 0, last: 0xFEDF_FFFF),
                                         IOVARange(start: 0xFEF0_0000, last: 0x7F_FFFF_FFFF)])
        XCTAssertEqual(info.dmaAvailable, 65000)
        XCTAssertFalse(info.isUsable(iova: 0xFEE0_0000, size: 0x1000))
        XCTAssertTrue(info.isUsable(iova: 0x1_0000_0000, size: 0x1000))
    }

    func testNoCapabilitiesMeansUnrestricted() throws {
        let info = try parse(InfoReply.full(pageSizes: 0x1000, chain: []))
        XCTAssertNil(info.iovaRanges)
        XCTAssertNil(info.dmaAvailable)
        XCTAssertEqual(info.pageSizes, 0x1000)
    }

    func testMissingPageSizeFlagUsesFallback() throws {
        let bytes = InfoReply.header(argsz: 24, flags: 0, pageSizes: 0xFFFF, capOffset: 0)
        XCTAssertEqual(try parse(bytes, fallback: 0x1000).pageSizes, 0x1000)
    }

    func testChainIgnoredWithoutCapsFlag() throws {
        var bytes = InfoReply.header(argsz: 48, flags: 1, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(7))
        let info = try parse(bytes)
        XCTAssertNil(info.dmaAvailable)
    }

    func testUnknownCapabilitiesAreSkipped() throws {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        // id 2 is the migration capability: not ours, skipped.
        bytes += InfoReply.capability(id: 2, next: 40, payload: [UInt8](repeating: 0xAA, count: 8))
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(42))
        XCTAssertEqual(bytes.count, 56)
        let info = try parse(bytes)
        XCTAssertEqual(info.dmaAvailable, 42)
        XCTAssertNil(info.iovaRanges)
    }

    func testRepeatedCapabilityKeepsTheFirst() throws {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 40, payload: InfoReply.availPayload(1))
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(2))
        XCTAssertEqual(try parse(bytes).dmaAvailable, 1)
    }

    func testEmptyIOVAListMeansNothingIsUsable() throws {
        let chain = InfoReply.chain(iovaRanges: [], dmaAvailable: nil, startingAt: 24)
        let info = try parse(InfoReply.full(chain: chain))
        XCTAssertEqual(info.iovaRanges, [])
        XCTAssertFalse(info.isUsable(iova: 0, size: 0x1000))
    }

    func testReplyShorterThanFixedHeader() {
        assertMalformed([UInt8](repeating: 0, count: 12), "shorter than the fixed header")
        // argsz itself claims less than the fixed header.
        let bytes = InfoReply.header(argsz: 8, flags: 1, pageSizes: 0x1000, capOffset: 0)
        assertMalformed(bytes, "argsz 8")
    }

    func testNextPointingBackwards() {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 2, next: 40, payload: [UInt8](repeating: 0, count: 8))
        bytes += InfoReply.capability(id: 3, next: 24, payload: InfoReply.availPayload(1)) // loops to the first
        assertMalformed(bytes, "links back to 24")
    }

    func testNextPointingAtItself() {
        var bytes = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 24, payload: InfoReply.availPayload(1))
        assertMalformed(bytes, "links back to 24")
    }

    func testNextInsideTheCurrentHeader() {
        var bytes = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 28, payload: InfoReply.availPayload(1))
        assertMalformed(bytes, "links back to 28")
    }

    func testNextOutOfBounds() {
        var bytes = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 4096, payload: InfoReply.availPayload(1))
        assertMalformed(bytes, "header at 4096 runs past the 40-byte reply")
    }

    func testHeaderStraddlingTheEnd() {
        var bytes = InfoReply.header(argsz: 44, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 2, next: 40, payload: [UInt8](repeating: 0, count: 8))
        bytes += [0, 0, 0, 0] // only half a header at 40
        assertMalformed(bytes, "header at 40 runs past the 44-byte reply")
    }

    func testFirstOffsetInsideFixedHeader() {
        var bytes = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 8)
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(1))
        assertMalformed(bytes, "overlaps the 24-byte fixed header")
    }

    func testChainBeyondArgszIsNotRead() {
        // The buffer holds a valid chain, but the kernel's argsz says only the
        // fixed part was written: the chain must not be trusted.
        var bytes = InfoReply.full(chain: InfoReply.chain(iovaRanges: nil, dmaAvailable: 9, startingAt: 24))
        InfoReply.put(UInt32(24), at: 0, in: &bytes)
        assertMalformed(bytes, "runs past the 24-byte reply")
    }

    func testTooManyIOVAs() {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 1, next: 0, payload: InfoReply.iovaPayload(count: 3, [(0, 0xFFFF)]))
        XCTAssertEqual(bytes.count, 56)
        assertMalformed(bytes, "nr_iovas 3 needs 64 bytes but the capability has 32")
    }

    func testHugeIOVACountDoesNotOverflow() {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 1, next: 0, payload: InfoReply.iovaPayload(count: .max, [(0, 0xFFFF)]))
        assertMalformed(bytes, "nr_iovas 4294967295")
    }

    func testIOVARangesBoundedByTheNextCapability() {
        // Two ranges claimed, but the next capability starts after one.
        var bytes = InfoReply.header(argsz: 88, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 1, next: 56, payload: InfoReply.iovaPayload(count: 2, [(0, 0xFFFF)]))
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(1) + [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(bytes.count, 88)
        assertMalformed(bytes, "nr_iovas 2 needs 48 bytes but the capability has 32")
    }

    func testIOVARangeStartAfterEnd() {
        let chain = InfoReply.chain(iovaRanges: [(0x2000, 0x1000)], dmaAvailable: nil, startingAt: 24)
        assertMalformed(InfoReply.full(chain: chain), "starts at 0x2000 after its end 0x1000")
    }

    func testTruncatedDMAAvailable() {
        var bytes = InfoReply.header(argsz: 34, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, next: 0, payload: [1, 0])
        assertMalformed(bytes, "DMA available capability of 10 bytes is too short")
    }

    func testVersionZeroIsRejected() {
        var bytes = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 3, version: 0, next: 0, payload: InfoReply.availPayload(1))
        assertMalformed(bytes, "version 0")
    }

    func testChainWalkReportsExtents() throws {
        var bytes = InfoReply.header(argsz: 56, flags: 3, pageSizes: 0x1000, capOffset: 24)
        bytes += InfoReply.capability(id: 2, version: 4, next: 40, payload: [UInt8](repeating: 0, count: 8))
        bytes += InfoReply.capability(id: 3, next: 0, payload: InfoReply.availPayload(1))
        let caps = try bytes.withUnsafeBytes { raw in
            Result { () throws(VFIOError) in
                try CapabilityChain.walk(raw, firstOffset: 24, fixedSize: 24, operation: "op", subject: "s")
            }
        }.get()
        XCTAssertEqual(caps, [VFIOCapability(id: 2, version: 4, offset: 24, length: 16),
                              VFIOCapability(id: 3, version: 1, offset: 40, length: 16)])
    }
}
