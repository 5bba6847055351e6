@testable import Wire
import VTd
import XCTest

/// Every refusal of `EventCodec.decodeRequest`, with its status (PROTOCOL.md
/// §1.7) and a message that names the field, offset or index.
final class EventRequestValidationTests: XCTestCase {
    func decode(_ type: EventType, _ payload: [UInt8], fds: Int = 0) -> Result<EventRequest, WireError> {
        EventCodec.decodeRequest(type: type.rawValue, payload: payload, fdCount: fds)
    }

    /// Asserts a refusal with `status` whose message contains every fragment.
    func assertRefused(_ result: Result<EventRequest, WireError>, _ status: EventStatus, _ fragments: String...,
                       file: StaticString = #filePath, line: UInt = #line) {
        guard let error = failure(result, file: file, line: line) else { return }
        XCTAssertEqual(error.status, status, error.message, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(error.message.contains(fragment), "\"\(error.message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    func hello(version: UInt32 = 1, flags: UInt32 = 0) -> [UInt8] {
        le(version) + le(flags) + le(UInt64(0x80)) + le(UInt64(0))
    }

    func memTable(_ regions: [(UInt64, UInt64, UInt64)], count: UInt32? = nil, reserved: UInt32 = 0) -> [UInt8] {
        le(count ?? UInt32(regions.count)) + le(reserved) + regions.flatMap { le($0.0) + le($0.1) + le($0.2) }
    }

    func notify(_ entries: [NotifierEntry]) -> [UInt8] {
        payload(of: EventCodec.encodeRequest(.notify(entries), tag: 0))
    }

    // MARK: - Type, size, descriptors

    func testUnknownTypes() {
        for type: UInt32 in [0, 10, 0xffff, 0x8000_0001] {
            let result = EventCodec.decodeRequest(type: type, payload: [], fdCount: 0)
            assertRefused(result, .unknownType, "\(type)")
        }
        // An unknown type wins over descriptors: it is what the reply must say.
        assertRefused(EventCodec.decodeRequest(type: 77, payload: [1, 2], fdCount: 3), .unknownType)
    }

    func testPayloadAboveTheFrameLimitIsTooLarge() {
        let big = [UInt8](repeating: 0, count: EventLimits.maxPayload + 1)
        assertRefused(decode(.invalidate, big), .tooLarge, "1048576")
    }

    func testExactLengths() {
        let cases: [(EventType, Int)] = [(.hello, 24), (.setRootTable, 8), (.setTranslation, 8), (.reset, 0), (.ready, 0), (.ping, 0)]
        for (type, length) in cases {
            for wrong in [length - 1, length + 1, length + 8] where wrong >= 0 {
                assertRefused(decode(type, [UInt8](repeating: 0, count: wrong)), .malformed, type.name, "\(wrong) bytes", "exactly \(length)")
            }
        }
    }

    func testDescriptorsWhereNoneBelong() {
        for type in EventType.allCases where type != .setMemTable {
            let valid = payload(of: EventCodec.encodeRequest(sample(type), tag: 0))
            XCTAssertNoThrow(try decode(type, valid).get(), type.name)
            assertRefused(decode(type, valid, fds: 1), .fds, type.name, "1 file descriptor", "only SET_MEM_TABLE")
        }
    }

    func sample(_ type: EventType) -> EventRequest {
        switch type {
        case .hello: .hello(version: 1, flags: 0, cap: 0x80, ecap: 0)
        case .setMemTable: .setMemTable([MemoryRegionDescriptor(gpa: 0, size: 4096, offset: 0)])
        case .setRootTable: .setRootTable(0x1000)
        case .setTranslation: .setTranslation(true)
        case .reset: .reset
        case .ready: .ready
        case .invalidate: .invalidate([InvalidationWords(low: 0x75, high: 0)])
        case .notify: .notify([NotifierEntry(iova: 0, translatedAddress: 0, addressMask: 0xfff, sourceID: 8, permission: .read)])
        case .ping: .ping
        }
    }

    // MARK: - HELLO

    func testHelloVersionAndFlags() {
        XCTAssertEqual(try decode(.hello, hello(flags: 1)).get(), .hello(version: 1, flags: 1, cap: 0x80, ecap: 0))
        assertRefused(decode(.hello, hello(version: 2)), .version, "version is 2", "version 1")
        assertRefused(decode(.hello, hello(version: 0)), .version, "version is 0")
        assertRefused(decode(.hello, hello(flags: 2)), .malformed, "flags 0x2", "undefined bits 0x2", "offset 4")
        assertRefused(decode(.hello, hello(flags: 0x8000_0001)), .malformed, "undefined bits 0x80000000")
    }

    // MARK: - SET_ROOT_TABLE, SET_TRANSLATION

    func testRootTableLowBits() {
        XCTAssertEqual(try decode(.setRootTable, le(UInt64(0xfedc_b000))).get(), .setRootTable(0xfedc_b000))
        XCTAssertEqual(try decode(.setRootTable, le(UInt64(0))).get(), .setRootTable(0))
        assertRefused(decode(.setRootTable, le(UInt64(0x5400))), .malformed, "scalable mode", "legacy")
        assertRefused(decode(.setRootTable, le(UInt64(0x5001))), .malformed, "bits 11:0 = 0x1", "legacy-mode")
        assertRefused(decode(.setRootTable, le(UInt64(0x5800))), .malformed, "bits 11:0 = 0x800")
        assertRefused(decode(.setRootTable, le(UInt64(0x5c00))), .malformed, "bits 11:0 = 0xc00")
    }

    func testTranslationFields() {
        assertRefused(decode(.setTranslation, le(UInt32(2)) + le(UInt32(0))), .malformed, "enabled (offset 0) is 2")
        assertRefused(decode(.setTranslation, le(UInt32(1)) + le(UInt32(1))), .malformed, "reserved field at offset 4")
    }

    // MARK: - SET_MEM_TABLE

    func testMemTableCountsAndLayout() {
        assertRefused(decode(.setMemTable, [1, 0, 0, 0], fds: 1), .malformed, "4 bytes", "8-byte")
        assertRefused(decode(.setMemTable, memTable([]), fds: 0), .malformed, "count is 0", "1 to 64")
        let sixtyFive = (0 ..< 65).map { (UInt64($0) << 12, UInt64(4096), UInt64(0)) }
        assertRefused(decode(.setMemTable, memTable(sixtyFive), fds: 65), .fds, "65 file descriptors", "at most 64")
        assertRefused(decode(.setMemTable, memTable(sixtyFive), fds: 64), .malformed, "count is 65", "1 to 64")
        let sixtyFour = Array(sixtyFive.prefix(64))
        guard case .setMemTable(let regions)? = try? decode(.setMemTable, memTable(sixtyFour), fds: 64).get() else {
            return XCTFail("64 regions must be accepted")
        }
        XCTAssertEqual(regions.count, 64)
        // The count says 2, one region follows.
        assertRefused(decode(.setMemTable, memTable([(0, 4096, 0)], count: 2), fds: 2), .malformed, "32 bytes", "count 2 needs exactly 56")
        // Truncated by one byte.
        assertRefused(decode(.setMemTable, Array(memTable([(0, 4096, 0)]).dropLast()), fds: 1), .malformed, "31 bytes")
        assertRefused(decode(.setMemTable, memTable([(0, 4096, 0)], reserved: 7), fds: 1), .malformed, "offset 4 is 0x7")
    }

    func testMemTableDescriptorCount() {
        let two = memTable([(0, 4096, 0), (0x10000, 4096, 0)])
        assertRefused(decode(.setMemTable, two, fds: 0), .fds, "2 regions but 0 file descriptors")
        assertRefused(decode(.setMemTable, two, fds: 1), .fds, "2 regions but 1 file descriptor ")
        assertRefused(decode(.setMemTable, two, fds: 3), .fds, "3 file descriptors")
        XCTAssertNoThrow(try decode(.setMemTable, two, fds: 2).get())
    }

    func testMemTableRegionRules() {
        assertRefused(decode(.setMemTable, memTable([(0, 4096, 0), (0x1800, 4096, 0)]), fds: 2), .memory,
                      "region 1 (payload offset 32)", "gpa 0x1800", "4 KiB-aligned")
        assertRefused(decode(.setMemTable, memTable([(0, 0, 0)]), fds: 1), .memory, "region 0", "size is 0")
        assertRefused(decode(.setMemTable, memTable([(0, 0x1100, 0)]), fds: 1), .memory, "size 0x1100", "multiple of 4 KiB")
        assertRefused(decode(.setMemTable, memTable([(0, 4096, 0x10)]), fds: 1), .memory, "offset 0x10")
        assertRefused(decode(.setMemTable, memTable([(0xffff_ffff_ffff_f000, 0x2000, 0)]), fds: 1), .memory, "64-bit address space")
        assertRefused(decode(.setMemTable, memTable([(0, 0x2000, 0xffff_ffff_ffff_f000)]), fds: 1), .memory, "file offset")
        // The last page of the address space is a valid region.
        XCTAssertNoThrow(try decode(.setMemTable, memTable([(0xffff_ffff_ffff_f000, 0x1000, 0)]), fds: 1).get())
    }

    func testMemTableOverlap() {
        // Adjacent regions do not overlap.
        XCTAssertNoThrow(try decode(.setMemTable, memTable([(0x2000, 0x1000, 0), (0x1000, 0x1000, 0)]), fds: 2).get())
        // Out of order, overlapping by one page: both indices are named.
        let overlapping = memTable([(0x10_0000, 0x1000, 0), (0x4000, 0x1000, 0), (0, 0x5000, 0)])
        assertRefused(decode(.setMemTable, overlapping, fds: 3), .memory, "regions 1 [0x4000, 0x5000) and 2 [0x0, 0x5000) overlap")
        // Identical regions.
        assertRefused(decode(.setMemTable, memTable([(0x1000, 0x1000, 0), (0x1000, 0x1000, 0x1000)]), fds: 2), .memory, "regions 0", "and 1")
    }

    // MARK: - INVALIDATE

    func testInvalidateCounts() {
        assertRefused(decode(.invalidate, []), .malformed, "0 bytes", "8-byte")
        assertRefused(decode(.invalidate, le(UInt32(0)) + le(UInt32(0))), .malformed, "count is 0", "1 to 65535")
        assertRefused(decode(.invalidate, le(UInt32(65537)) + le(UInt32(0))), .malformed, "count is 65537")
        assertRefused(decode(.invalidate, le(UInt32(2)) + le(UInt32(0)) + [UInt8](repeating: 0, count: 16)), .malformed,
                      "24 bytes", "count 2 needs exactly 40")
        assertRefused(decode(.invalidate, le(UInt32(1)) + le(UInt32(0)) + [UInt8](repeating: 0, count: 17)), .malformed, "25 bytes")
        assertRefused(decode(.invalidate, le(UInt32(1)) + le(UInt32(0x100)) + [UInt8](repeating: 0, count: 16)), .malformed, "reserved field at offset 4")
        // Descriptor contents are not the codec's business (the daemon stops the batch there).
        XCTAssertEqual(try decode(.invalidate, le(UInt32(1)) + le(UInt32(0)) + le(UInt64.max) + le(UInt64.max)).get(),
                       .invalidate([InvalidationWords(low: .max, high: .max)]))
    }

    func testLargestInvalidateThatFitsAFrame() {
        // 8 + 16·65,535 is the largest INVALIDATE within 1 MiB (see EventLimits).
        let count = 65_535
        let bytes = le(UInt32(count)) + le(UInt32(0)) + [UInt8](repeating: 0x11, count: 16 * count)
        XCTAssertLessThanOrEqual(bytes.count, EventLimits.maxPayload)
        guard case .invalidate(let words)? = try? decode(.invalidate, bytes).get() else { return XCTFail("not decoded") }
        XCTAssertEqual(words.count, count)
        XCTAssertEqual(words.last, InvalidationWords(low: 0x1111_1111_1111_1111, high: 0x1111_1111_1111_1111))
    }

    // MARK: - NOTIFY

    let good = NotifierEntry(iova: 0x20_0000, translatedAddress: 0x40_0000, addressMask: 0x1f_ffff, sourceID: 0x18, permission: .readWrite)

    func testNotifyCounts() {
        assertRefused(decode(.notify, le(UInt32(0)) + le(UInt32(0))), .malformed, "NOTIFY count is 0")
        assertRefused(decode(.notify, le(UInt32(32768)) + le(UInt32(0))), .malformed, "count is 32768", "1 to 32767")
        assertRefused(decode(.notify, Array(notify([good]).dropLast(4))), .malformed, "36 bytes", "needs exactly 40")
    }

    func testNotifyEntryRules() {
        func withEntry(_ change: (inout NotifierEntry) -> Void) -> [UInt8] {
            var bad = good
            change(&bad)
            return notify([good, bad])
        }
        assertRefused(decode(.notify, withEntry { $0.permission = DMAPermission(rawValue: 4) }), .malformed, "entry 1 (payload offset 40)", "permission is 4")
        assertRefused(decode(.notify, withEntry { $0.addressMask = 0x2fff }), .malformed, "entry 1", "address_mask 0x2fff")
        assertRefused(decode(.notify, withEntry { $0.addressMask = 0x7ff; $0.iova = 0; $0.translatedAddress = 0 }), .malformed, "address_mask 0x7ff")
        assertRefused(decode(.notify, withEntry { $0.iova = 0x20_1000 }), .malformed, "entry 1", "iova 0x201000")
        assertRefused(decode(.notify, withEntry { $0.translatedAddress = 0x40_1000 }), .malformed, "translated_addr 0x401000")
        for k in 35 ... 39 {
            var bytes = notify([good, good])
            bytes[8 + 32 + k - 8] = 0x01 // byte k of entry 1 in §1.6's numbering (offset 8 + 32·i + (k − 8))
            assertRefused(decode(.notify, bytes), .malformed, "entry 1", "reserved byte at entry offset \(k - 8)")
        }
        // The whole address space in one entry: mask all ones, addresses 0.
        let all = NotifierEntry(iova: 0, translatedAddress: 0, addressMask: .max, sourceID: 1, permission: [])
        XCTAssertEqual(try decode(.notify, notify([all])).get(), .notify([all]))
    }

    func testFirstBadEntryIsNamed() {
        var bad = good
        bad.permission = DMAPermission(rawValue: 9)
        var entries = [NotifierEntry](repeating: good, count: 10)
        entries[6] = bad
        entries[8] = bad
        assertRefused(decode(.notify, notify(entries)), .malformed, "entry 6 (payload offset 200)")
    }
}
