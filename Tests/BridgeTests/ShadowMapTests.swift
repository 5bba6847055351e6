import VTdGuest
import Bridge
import XCTest

final class ShadowMapTests: XCTestCase {
    func entry(_ iova: UInt64, _ size: UInt64 = 4096) -> ShadowEntry {
        ShadowEntry(iova: iova, size: size, hostAddress: 0x7f00_0000_0000 + iova, permission: .readWrite)
    }

    func testEntryIs24BytesInline() {
        // Issue 5's memory goal is at most 32 bytes per mapping, chunk
        // headers included: three words leave room for them.
        XCTAssertEqual(MemoryLayout<ShadowEntry>.stride, 24)
        let e = ShadowEntry(iova: 0x1000, size: 1 << 21, hostAddress: 0x2000, permission: .write)
        XCTAssertEqual(e.size, 1 << 21)
        XCTAssertEqual(e.permission, .write)
        XCTAssertEqual(e.end, 0x1000 + (1 << 21))
    }

    /// One mapping made and removed over and over in an empty map (the
    /// vfio-user DMA_MAP/DMA_UNMAP pattern) reuses the emptied chunk: the
    /// storage held stays one chunk, the same after every cycle, and the map
    /// stays right; clearing the map gives the spare back.
    func testAnEmptiedChunkIsKeptForTheNextMapping() {
        var map = ShadowMap()
        map.insert(entry(0x1000))
        let oneChunk = map.allocatedBytes
        map.remove(iova: 0x1000)
        XCTAssertEqual(map.count, 0)
        XCTAssertEqual(map.allocatedBytes, oneChunk, "the emptied chunk is held as the spare")
        for cycle in 0..<100 {
            let iova = 0x10_0000 + UInt64(cycle) * 0x1000
            map.insert(entry(iova))
            XCTAssertEqual(map.allocatedBytes, oneChunk, "cycle \(cycle): the spare became the chunk")
            XCTAssertEqual(map.entries.map(\.iova), [iova])
            XCTAssertEqual(map.remove(iova: iova)?.iova, iova)
            XCTAssertTrue(map.entries.isEmpty)
        }
        map.removeAll()
        XCTAssertLessThan(map.allocatedBytes, oneChunk, "removeAll frees the spare too")
    }

    func testRandomInsertsAndRemovesMatchASortedReference() {
        var map = ShadowMap()
        var reference: [UInt64: ShadowEntry] = [:]
        var rng = SplitMix64(state: 42)
        // 4,000 page slots; enough to split and merge chunks of 128 many times.
        for _ in 0..<40_000 {
            let slot = UInt64.random(in: 0..<4000, using: &rng) * 4096
            if reference[slot] != nil, Bool.random(using: &rng) {
                XCTAssertEqual(map.remove(iova: slot), reference.removeValue(forKey: slot))
            } else if reference[slot] == nil {
                map.insert(entry(slot))
                reference[slot] = entry(slot)
            }
        }
        XCTAssertEqual(map.count, reference.count)
        XCTAssertEqual(map.entries, reference.keys.sorted().map { reference[$0]! })
        XCTAssertEqual(map.mappedBytes, UInt64(reference.count) * 4096)
        for probe in stride(from: UInt64(0), to: 4000 * 4096, by: 1000) {
            let hit = reference[probe & ~0xfff]
            XCTAssertEqual(map.entry(containing: probe), hit)
        }
    }

    func testInOrderAppendsPackChunksFull() {
        var map = ShadowMap()
        for i in 0..<5000 as Range<UInt64> { map.insert(entry(i * 4096)) }
        XCTAssertEqual(map.count, 5000)
        XCTAssertEqual(map.entries.map(\.iova), (0..<5000).map { $0 * 4096 })
        XCTAssertEqual(map.firstIndex(endingAfter: 4096 * 4999 + 1) < map.endIndex, true)
        XCTAssertEqual(map.firstIndex(endingAfter: 4096 * 5000), map.endIndex)
    }

    func testOverlapQueriesRespectWholeEntries() {
        var map = ShadowMap()
        map.insert(entry(0x20_0000, 1 << 21))
        XCTAssertTrue(map.overlaps(iova: 0x3f_f000, end: 0x40_0000))
        XCTAssertFalse(map.overlaps(iova: 0x40_0000, end: 0x40_1000))
        XCTAssertFalse(map.overlaps(iova: 0x1f_f000, end: 0x20_0000))
        XCTAssertEqual(map.entry(containing: 0x30_0000)?.iova, 0x20_0000)
        XCTAssertNil(map.remove(iova: 0x30_0000), "only an exact start removes")
        XCTAssertEqual(map.count, 1)
    }
}
