import VTd
import VTdGuest
import XCTest

/// The walk budget (SecondLevelWalker.budget) and the address-mask limits of
/// page-selective invalidations, at the VT-d model's level. The sync-level
/// consequences are in Tests/BridgeTests/HostileTableTests.swift.
final class WalkBudgetTests: XCTestCase {
    /// A 3-level domain whose top table points at itself from every entry:
    /// a walk of [0, 1 GiB) reads 1 + 512 + 512·512 entries and reports
    /// 512·512 leaves, each mapping the table page.
    func selfReferencingGuest() throws -> (InMemoryGuest, UInt64) {
        let g = try InMemoryGuest()
        let top = try g.writer.createDomain(1, levels: 3)
        for i in 0..<512 as Range<UInt64> { g.writer.store(top | 3, at: top + i * 8) }
        return (g, top)
    }

    func walk(_ g: InMemoryGuest, _ top: UInt64, budget: Int, end: UInt64 = 1 << 30)
        -> (leaves: Int, faults: [TranslationFault], stoppedAt: UInt64?, lastLeaf: UInt64?) {
        var leaves = 0
        var last: UInt64?
        var faults: [TranslationFault] = []
        let stopped = SecondLevelWalker(memory: g.memory, caps: g.caps, budget: budget)
            .walk(table: top, levels: 3, start: 0, end: end,
                  leaf: { leaves += 1; last = $0.iova }, fault: { faults.append($0) })
        return (leaves, faults, stopped, last)
    }

    func testABudgetThatCoversTheWalkChangesNothing() throws {
        let (g, top) = try selfReferencingGuest()
        let r = walk(g, top, budget: 1 + 512 + 512 * 512)
        XCTAssertEqual(r.leaves, 512 * 512)
        XCTAssertEqual(r.faults, [])
        XCTAssertNil(r.stoppedAt)
    }

    func testTheWalkStopsWhereTheBudgetRunsOutWithOneFault() throws {
        let (g, top) = try selfReferencingGuest()
        // One entry short: the very last level-1 entry is not read.
        let r = walk(g, top, budget: 512 * 512 + 512)
        XCTAssertEqual(r.leaves, 512 * 512 - 1)
        XCTAssertEqual(r.faults.map(\.reason), [.walkBudgetExceeded])
        XCTAssertEqual(r.stoppedAt, (1 << 30) - 4096)
        XCTAssertEqual(r.faults.first?.iova, (1 << 30) - 4096)
        XCTAssertEqual(r.lastLeaf, (1 << 30) - 8192, "every leaf below the stop point was reported")
        let detail = r.faults.first?.detail ?? ""
        XCTAssertTrue(detail.contains("\(512 * 512 + 512) paging entries"), detail)
        XCTAssertTrue(detail.contains("0x3ffff000"), detail)
        XCTAssertTrue(detail.contains("walk-budget"), detail)
        XCTAssertTrue(detail.contains("alias"), detail)
    }

    func testAFullRangeWalkOfAliasedTablesIsCutByTheBudget() throws {
        // 4 levels, every entry of the top table pointing at itself: 512^4
        // entries over the 48-bit range without a budget.
        let g = try InMemoryGuest()
        let top = try g.writer.createDomain(1, levels: 4)
        for i in 0..<512 as Range<UInt64> { g.writer.store(top | 3, at: top + i * 8) }
        var steps = SecondLevelWalker(memory: g.memory, caps: g.caps, budget: 100_000)
            .steps(table: top, levels: 4, start: 0, end: .max)
        var leaves = 0, faults = 0
        while let step = steps.next() {
            if case .leaf = step { leaves += 1 } else { faults += 1 }
        }
        XCTAssertEqual(faults, 1)
        XCTAssertEqual(steps.fault?.reason, .walkBudgetExceeded)
        XCTAssertEqual(steps.budgetLeft, 0)
        XCTAssertNotNil(steps.stoppedAt)
        // 3 entries to reach the first level-1 table, then 513 per 2 MiB.
        XCTAssertEqual(leaves, 100_000 - 3 - (leaves / 512))
        XCTAssertNil(steps.next(), "nothing after the budget fault")
        XCTAssertEqual(SecondLevelWalker(memory: g.memory, caps: g.caps).budget, WalkBudget.defaultEntries)
    }

    func testSkippingLevel1EntriesCountsAgainstTheBudget() throws {
        let (g, top) = try selfReferencingGuest()
        var steps = SecondLevelWalker(memory: g.memory, caps: g.caps, budget: 600)
            .steps(table: top, levels: 3, start: 0, end: 1 << 30)
        guard case .leaf = steps.next() else { return XCTFail("the first leaf") }
        // 3 entries read: level 3, level 2, the first level-1 entry.
        let run = try XCTUnwrap(steps.level1Run)
        XCTAssertEqual(run.budget, 597)
        XCTAssertEqual(run.index, 1)
        steps.skipLevel1(500)
        XCTAssertEqual(steps.budgetLeft, 97)
        XCTAssertEqual(steps.level1Run?.budget, 97)
        var leaves = 0
        while let step = steps.next() {
            if case .leaf = step { leaves += 1 } else { break }
        }
        // 11 more level-1 entries end the first table, then the next level-2
        // entry (1 read) and 85 level-1 entries of the second table.
        XCTAssertEqual(leaves, 11 + 85)
        XCTAssertEqual(steps.fault?.reason, .walkBudgetExceeded)
        XCTAssertEqual(steps.stoppedAt, (1 << 21) + 85 * 4096)
    }

    func testAPassOfASyncStartsWithWhatThePreviousOneLeft() throws {
        let (g, top) = try selfReferencingGuest()
        let walker = SecondLevelWalker(memory: g.memory, caps: g.caps, budget: 1000)
        var first = walker.steps(table: top, levels: 3, start: 0, end: 0x1000)
        while first.next() != nil {}
        XCTAssertEqual(first.budgetLeft, 997)
        var second = walker.steps(table: top, levels: 3, start: 0x1000, end: 1 << 30, budget: first.budgetLeft)
        var n = 0
        while let step = second.next() { if case .leaf = step { n += 1 } }
        // Its own level-3 and level-2 entries, 511 leaves, the next level-2
        // entry, and leaves until the 997 entries are spent.
        XCTAssertEqual(n, 997 - 3)
        XCTAssertTrue(second.fault!.detail.contains("1000 paging entries"), second.fault!.detail)
    }

    // MARK: address masks of page-selective invalidations

    func testAddressMasksUpToTheTopOfTheSpace() {
        let caps = IOMMUCapabilities.make(maxAddressMask: 63)
        func decode(_ am: UInt64, address: UInt64 = 0x1234_5000) -> Result<InvalidationDescriptor, InvalidationDescriptor.DecodeError> {
            InvalidationDescriptor.decode(low: 0x0001_0032, high: address | am, caps: caps)
        }
        // AM 52: 2^52 pages of 4 KiB are all of the 64-bit space, from 0.
        XCTAssertEqual(try decode(52).get(),
                       .iotlb(.pages(domainID: 1, address: 0, addressMask: 52, invalidationHint: false), drainReads: false, drainWrites: false))
        XCTAssertTrue(InvalidationDescriptor.pageRange(address: 0, addressMask: 52) == (0, .max))
        // AM 51: half of it, aligned.
        XCTAssertTrue(InvalidationDescriptor.pageRange(address: 0xffff_ffff_ffff_f000, addressMask: 51) == (1 << 63, .max))
        XCTAssertTrue(InvalidationDescriptor.pageRange(address: 0x20_3000, addressMask: 9) == (0x20_0000, 0x40_0000))
        // Above 52 the range would wrap past 2^64: refused, whatever MAMV says.
        for am: UInt64 in [53, 60, 63] {
            guard case let .failure(error) = decode(am, address: 0xffff_ffff_ffff_f000) else {
                XCTFail("AM \(am) accepted")
                continue
            }
            XCTAssertTrue(error.reason.contains("wrap past 2^64"), error.description)
        }
    }
}
