import Bridge
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// A replay compares whole level-1 tables with the shadow in one loop
/// (`WalkedMappings.skipMatching`). It must arrive where the general path
/// does for anything a guest can write behind the daemon's back: leaves
/// changed, cleared, given reserved bits, pointed outside RAM or at the edge
/// between two RAM regions, and level-2 entries swapped for large leaves.
final class ReplayFastPathTests: SyncTestCase {
    /// Region 0 is [0, 64 MiB) (tables in its top 8 MiB); region 1 is the
    /// next 4 MiB, contiguous in GPA but a separate host mapping.
    let dataTop: UInt64 = 56 << 20
    let region1: UInt64 = 64 << 20
    let windows: [UInt64] = [0x4000_0000, 0x4020_0000, 0x4040_0000, 0x7fe0_0000]

    override func setUpWithError() throws {
        try setUpGuest(ramSize: 64 << 20, extraRegions: [GuestRAMRegionSpec(gpa: 64 << 20, size: 4 << 20, backing: .anonymous)])
    }

    /// Fills each 2 MiB window with 4 KiB leaves and syncs them.
    func populate(_ rng: inout SplitMix64) throws -> RecordingBackend {
        let backend = try attach(sid, domain: 1)
        var batch: [InvalidationDescriptor] = []
        for w in windows {
            for i in 0..<512 as Range<UInt64> where UInt64.random(in: 0..<8, using: &rng) != 0 {
                batch += try guest.writer.map(domain: 1, iova: w + i * 4096, gpa: UInt64.random(in: 0..<(dataTop >> 12), using: &rng) << 12)
            }
        }
        deliver(batch)
        return backend
    }

    /// A raw level-1 entry of one of the kinds listed above.
    func hostileLeaf(_ rng: inout SplitMix64) -> UInt64 {
        let perm = UInt64.random(in: 0...3, using: &rng)
        switch UInt64.random(in: 0..<9, using: &rng) {
        case 0: return 0
        case 1: return (UInt64.random(in: 0..<(dataTop >> 12), using: &rng) << 12) | perm
        case 2: return (region1 - 4096) | 3                         // last page of region 0
        case 3: return region1 | perm                                // first page of region 1
        case 4: return (region1 + (UInt64.random(in: 0..<1024, using: &rng) << 12)) | 3
        case 5: return (1 << 40) | 3                                 // not guest RAM
        case 6: return (UInt64.random(in: 0..<(dataTop >> 12), using: &rng) << 12) | 3 | (1 << 50)  // above the 48-bit AW
        case 7: return (UInt64.random(in: 0..<(dataTop >> 12), using: &rng) << 12) | 3 | (1 << 11)  // SNP without snoop control
        default: return (region1 + (4 << 20)) | 3                    // just past region 1
        }
    }

    func testReplayAfterHiddenEditsEqualsAFreshWalk() throws {
        for seed in 1...8 as ClosedRange<UInt64> {
            try setUpWithError()
            var rng = SplitMix64(state: seed)
            let backend = try populate(&rng)
            assertSameEntries(space(sid).shadow.entries, try freshWalk(sid), "seed \(seed): the first sync")
            for round in 0..<60 {
                // Edits the guest makes without invalidating (a replay must
                // find them), from one entry to a whole table's worth.
                for _ in 0..<Int.random(in: 0...40, using: &rng) {
                    let w = windows.randomElement(using: &rng)!
                    let iova = w + UInt64.random(in: 0..<512, using: &rng) * 4096
                    if UInt64.random(in: 0..<50, using: &rng) == 0 {
                        // Replace the whole level-1 table with a 2 MiB leaf, or restore a table.
                        if UInt64.random(in: 0..<2, using: &rng) == 0 {
                            try guest.writer.storeEntry(domain: 1, iova: w, level: 2, raw: (2 << 20) | 0x83)
                        } else {
                            _ = try guest.writer.map(domain: 1, iova: iova, gpa: 0x1000)
                        }
                        continue
                    }
                    guard let slot = guest.writer.existingSlot(domain: 1, iova: iova, level: 1) else { continue }
                    if UInt64.random(in: 0..<4, using: &rng) == 0 {
                        // The same leaf with only a reserved bit added: the
                        // address still matches the shadow, the bit must not.
                        let reserved: [UInt64] = [1 << 11, 1 << 50, 1 << 62]
                        try guest.writer.storeEntry(domain: 1, iova: iova, level: 1,
                                                    raw: guest.writer.load(slot) | reserved.randomElement(using: &rng)!)
                    } else {
                        try guest.writer.storeEntry(domain: 1, iova: iova, level: 1, raw: hostileLeaf(&rng))
                    }
                }
                backend.clearCalls()
                _ = try bridge.replay(sid)
                assertSameEntries(space(sid).shadow.entries, try freshWalk(sid), "seed \(seed) round \(round)")
                assertShadowMatchesKernel(sid, backend)
                // And a replay of what is now unchanged makes no call at all.
                backend.clearCalls()
                let again = try bridge.replay(sid)
                XCTAssertEqual(backend.calls, [], "seed \(seed) round \(round): an unchanged replay")
                XCTAssertEqual(again.maps + again.unmaps, 0)
            }
        }
    }

    /// Names the first difference rather than printing thousands of entries.
    func assertSameEntries(_ got: [ShadowEntry], _ want: [ShadowEntry], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard got != want else { return }
        let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
        XCTFail("\(what): \(got.count) entries, want \(want.count); first difference at \(i): "
                + "\(i < got.count ? "\(got[i])" : "none") vs \(i < want.count ? "\(want[i])" : "none")", file: file, line: line)
    }
}
