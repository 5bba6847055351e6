import VTd
import VTdGuest
import XCTest

final class ContextLookupTests: XCTestCase {
    let sid = SourceID("00:03.0")!

    func testAttachedDeviceTranslatesThroughItsDomain() throws {
        let g = try InMemoryGuest()
        _ = try g.writer.attach(sid, domain: 7, levels: 4)
        let state = ContextLookup.lookup(sourceID: sid, rootTable: g.writer.rootTable, memory: g.memory, caps: g.caps)
        XCTAssertEqual(state, .translated(domainID: 7, table: g.writer.domainTables[7]!.table, levels: 4))
        // Another device on the same bus, and one on another bus, are not present.
        XCTAssertEqual(ContextLookup.lookup(sourceID: SourceID("00:04.0")!, rootTable: g.writer.rootTable, memory: g.memory, caps: g.caps), .notPresent)
        XCTAssertEqual(ContextLookup.lookup(sourceID: SourceID("01:03.0")!, rootTable: g.writer.rootTable, memory: g.memory, caps: g.caps), .notPresent)
    }

    func reason(_ state: ContextState) -> FaultReason? {
        if case let .invalid(f) = state { return f.reason }
        return nil
    }

    func testMalformedEntriesAreFaults() throws {
        let g = try InMemoryGuest()
        let root = g.writer.rootTable
        func lookup() -> ContextState { ContextLookup.lookup(sourceID: sid, rootTable: root, memory: g.memory, caps: g.caps) }
        // Root table outside RAM or unaligned.
        XCTAssertEqual(reason(ContextLookup.lookup(sourceID: sid, rootTable: 1 << 40, memory: g.memory, caps: g.caps)), .rootTableOutsideRAM)
        XCTAssertEqual(reason(ContextLookup.lookup(sourceID: sid, rootTable: root + 8, memory: g.memory, caps: g.caps)), .rootTableOutsideRAM)

        let table = try g.writer.createDomain(1)
        // AW=3 (5-level) is not in SAGAW {3,4}.
        _ = try g.writer.writeContext(sid, ContextEntry.encode(secondLevelTable: table, domainID: 1, levels: 5), previousDomain: nil)
        XCTAssertEqual(reason(lookup()), .contextEntryInvalid)
        // TT = 11b is reserved.
        _ = try g.writer.writeContext(sid, ContextEntry(low: table | 0xc | 1, high: 2 | 1 << 8), previousDomain: nil)
        XCTAssertEqual(reason(lookup()), .contextEntryInvalid)
        // TT = 01b without ECAP.DT.
        _ = try g.writer.writeContext(sid, ContextEntry(low: table | 0x4 | 1, high: 2 | 1 << 8), previousDomain: nil)
        XCTAssertEqual(reason(lookup()), .contextEntryInvalid)
        // Reserved bits: low bit 4, high bit 7, high bit 24, address above MGAW.
        let did1: UInt64 = 2 | 1 << 8
        let cases: [(UInt64, UInt64)] = [(table | 0x10 | 1, did1), (table | 1, did1 | 0x80),
                                         (table | 1, did1 | 1 << 24), (table | 1 << 50 | 1, did1)]
        for (lo, hi) in cases {
            _ = try g.writer.writeContext(sid, ContextEntry(low: lo, high: hi), previousDomain: nil)
            XCTAssertEqual(reason(lookup()), .contextEntryReserved, "low 0x\(String(lo, radix: 16)) high 0x\(String(hi, radix: 16))")
        }
        // Reserved bit in the root entry.
        let rootSlot = root + UInt64(sid.bus) * 16
        let good = g.writer.load(rootSlot)
        g.writer.store(good | 0x2, at: rootSlot)
        XCTAssertEqual(reason(lookup()), .rootEntryReserved)
        g.writer.store(good, at: rootSlot)
        g.writer.store(1, at: rootSlot + 8)
        XCTAssertEqual(reason(lookup()), .rootEntryReserved)
        g.writer.store(0, at: rootSlot + 8)
        // Context table outside RAM.
        g.writer.store((1 << 38) | 1, at: rootSlot)
        XCTAssertEqual(reason(lookup()), .contextTableOutsideRAM)
    }

    func testPassThroughNeedsECAPPT() throws {
        let g = try InMemoryGuest()
        _ = try g.writer.attachPassThrough(sid, domain: 2)
        XCTAssertEqual(ContextLookup.lookup(sourceID: sid, rootTable: g.writer.rootTable, memory: g.memory, caps: g.caps), .passThrough(domainID: 2))
        let noPT = IOMMUCapabilities.make(passThrough: false)
        XCTAssertEqual(reason(ContextLookup.lookup(sourceID: sid, rootTable: g.writer.rootTable, memory: g.memory, caps: noPT)), .contextEntryInvalid)
    }
}
