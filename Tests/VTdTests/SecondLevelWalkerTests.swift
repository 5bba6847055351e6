import VTd
import VTdGuest
import XCTest

final class SecondLevelWalkerTests: XCTestCase {
    func collect(_ g: InMemoryGuest, did: UInt16 = 1, start: UInt64 = 0, end: UInt64 = .max,
                 caps: IOMMUCapabilities? = nil) -> ([SecondLevelLeaf], [TranslationFault]) {
        let (table, levels) = g.writer.domainTables[did]!
        var leaves: [SecondLevelLeaf] = []
        var faults: [TranslationFault] = []
        SecondLevelWalker(memory: g.memory, caps: caps ?? g.caps)
            .walk(table: table, levels: levels, start: start, end: end, leaf: { leaves.append($0) }, fault: { faults.append($0) })
        return (leaves, faults)
    }

    func testLeavesOfEverySizeInIOVAOrder() throws {
        let g = try InMemoryGuest()
        try g.writer.createDomain(1, levels: 4)
        _ = try g.writer.map(domain: 1, iova: 0x4000_0000, gpa: 0x0, sizeShift: 30)           // 1 GiB
        _ = try g.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21, permission: .read) // 2 MiB read-only
        _ = try g.writer.map(domain: 1, iova: 0x1000, gpa: 0x5000, permission: .write)        // 4 KiB write-only
        _ = try g.writer.map(domain: 1, iova: 0x7fff_ffff_f000, gpa: 0x6000)                   // last page of 48 bits
        let (leaves, faults) = collect(g)
        XCTAssertEqual(faults, [])
        XCTAssertEqual(leaves, [
            SecondLevelLeaf(iova: 0x1000, gpa: 0x5000, sizeShift: 12, permission: .write),
            SecondLevelLeaf(iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21, permission: .read),
            SecondLevelLeaf(iova: 0x4000_0000, gpa: 0, sizeShift: 30, permission: .readWrite),
            SecondLevelLeaf(iova: 0x7fff_ffff_f000, gpa: 0x6000, sizeShift: 12, permission: .readWrite),
        ])
    }

    func testRangeSelectsLeavesAndReportsLargeLeavesWhole() throws {
        let g = try InMemoryGuest()
        try g.writer.createDomain(1)
        _ = try g.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21)
        for i in 0..<8 as Range<UInt64> { _ = try g.writer.map(domain: 1, iova: 0x100_0000 + i * 0x1000, gpa: i * 0x1000) }
        XCTAssertEqual(collect(g, start: 0x30_0000, end: 0x30_1000).0.map(\.iova), [0x20_0000])
        XCTAssertEqual(collect(g, start: 0x100_2000, end: 0x100_4000).0.map(\.iova), [0x100_2000, 0x100_3000])
        XCTAssertEqual(collect(g, start: 0x100_8000, end: 0x200_0000).0, [])
    }

    func testThreeAndFiveLevelTables() throws {
        let caps = IOMMUCapabilities.make(addressWidth: 57, levels: [3, 4, 5])
        let g = try InMemoryGuest(caps: caps)
        try g.writer.createDomain(3, levels: 3)
        try g.writer.createDomain(5, levels: 5)
        _ = try g.writer.map(domain: 3, iova: 0x7f_ffff_f000, gpa: 0x1000)
        _ = try g.writer.map(domain: 5, iova: 0x1_0000_0000_0000, gpa: 0x2000)
        XCTAssertEqual(collect(g, did: 3).0.map(\.iova), [0x7f_ffff_f000])
        XCTAssertEqual(collect(g, did: 5).0.map(\.iova), [0x1_0000_0000_0000])
        // A 3-level table translates 39 bits: nothing exists above.
        XCTAssertEqual(collect(g, did: 3, start: 1 << 39).0, [])
    }

    func testPermissionsAreTheANDOfAllLevels() throws {
        let g = try InMemoryGuest()
        try g.writer.createDomain(1)
        _ = try g.writer.map(domain: 1, iova: 0x1000, gpa: 0x1000)
        // Clear W in the level-2 entry above the page.
        let slot = g.writer.existingSlot(domain: 1, iova: 0x1000, level: 2)!
        g.writer.store(g.writer.load(slot) & ~2, at: slot)
        XCTAssertEqual(collect(g).0, [SecondLevelLeaf(iova: 0x1000, gpa: 0x1000, sizeShift: 12, permission: .read)])
        // With R also cleared the subtree is not present at all.
        g.writer.store(g.writer.load(slot) & ~3, at: slot)
        XCTAssertEqual(collect(g).0, [])
    }

    func testReservedBitsAtEveryLevelAreFaultsAndNothingBelowIsWalked() throws {
        let g = try InMemoryGuest()
        // (level, entry bits to add, leaf?) — mirrors spec 9.8's reserved fields.
        let cases: [(Int, UInt64, Bool)] = [
            (4, 0x80, false),          // PS at level 4
            (4, 1 << 11, false),       // SNP in a non-leaf entry
            (4, 1 << 50, false),       // address above 48 bits
            (3, 1 << 62, false),       // TM in a non-leaf
            (2, 1 << 11, false),
            (1, 1 << 11, true),        // SNP without ECAP.SC
            (1, 1 << 62, true),        // TM without ECAP.DT
            (1, 1 << 49, true),        // address above MGAW
        ]
        for (level, bits, _) in cases {
            try g.writer.createDomain(1)
            _ = try g.writer.map(domain: 1, iova: 0x1000, gpa: 0x1000)
            let slot = g.writer.existingSlot(domain: 1, iova: 0x1000, level: level)!
            let good = g.writer.load(slot)
            g.writer.store(good | bits, at: slot)
            let (leaves, faults) = collect(g)
            XCTAssertEqual(leaves, [], "level \(level) bits 0x\(String(bits, radix: 16))")
            XCTAssertEqual(faults.map(\.reason), [.entryReserved], "level \(level) bits 0x\(String(bits, radix: 16))")
            XCTAssertEqual(faults.first?.level, level)
            g.writer.store(good, at: slot)
        }
        // Large leaves with frame bits below their size set.
        _ = try g.writer.map(domain: 1, iova: 0x4000_0000, gpa: 0x4000_0000, sizeShift: 30)
        let slot1G = g.writer.existingSlot(domain: 1, iova: 0x4000_0000, level: 3)!
        g.writer.store(g.writer.load(slot1G) | 0x20_0000, at: slot1G)
        _ = try g.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x20_0000, sizeShift: 21)
        let slot2M = g.writer.existingSlot(domain: 1, iova: 0x20_0000, level: 2)!
        g.writer.store(g.writer.load(slot2M) | 0x1000, at: slot2M)
        let (leaves, faults) = collect(g)
        XCTAssertEqual(leaves.map(\.iova), [0x1000])
        XCTAssertEqual(faults.map(\.level), [2, 3])
    }

    func testOptionalBitsAreAcceptedWhenAdvertised() throws {
        let caps = IOMMUCapabilities.make(deviceTLB: true, snoopControl: true)
        let g = try InMemoryGuest(caps: caps)
        try g.writer.createDomain(1)
        _ = try g.writer.map(domain: 1, iova: 0x1000, gpa: 0x1000)
        let slot = g.writer.existingSlot(domain: 1, iova: 0x1000, level: 1)!
        // SNP, TM, and the ignored bits 63 and 61:52.
        g.writer.store(g.writer.load(slot) | 1 << 11 | 1 << 62 | 1 << 63 | 1 << 55, at: slot)
        let (leaves, faults) = collect(g)
        XCTAssertEqual(faults, [])
        XCTAssertEqual(leaves, [SecondLevelLeaf(iova: 0x1000, gpa: 0x1000, sizeShift: 12, permission: .readWrite)])
    }

    func testLargeLeavesWithoutSLLPSAreFaults() throws {
        let caps = IOMMUCapabilities.make(largePages2M: false, largePages1G: false)
        let g = try InMemoryGuest(caps: caps)
        try g.writer.createDomain(1)
        _ = try g.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x20_0000, sizeShift: 21)
        _ = try g.writer.map(domain: 1, iova: 0x4000_0000, gpa: 0, sizeShift: 30)
        let (leaves, faults) = collect(g)
        XCTAssertEqual(leaves, [])
        XCTAssertEqual(faults.map(\.reason), [.entryReserved, .entryReserved])
    }

    func testTablesOutsideRAMAreFaults() throws {
        let g = try InMemoryGuest()
        try g.writer.createDomain(1)
        _ = try g.writer.map(domain: 1, iova: 0x1000, gpa: 0x1000)
        let slot = g.writer.existingSlot(domain: 1, iova: 0x1000, level: 2)!
        g.writer.store((1 << 40) | 3, at: slot)
        let (leaves, faults) = collect(g)
        XCTAssertEqual(leaves, [])
        XCTAssertEqual(faults.map(\.reason), [.tableOutsideRAM])
        XCTAssertEqual(faults.first?.level, 1)
    }

    func testSelfReferencingTablesAreBounded() throws {
        // Every entry of the top table points back at the top table: the walk
        // descends at most `levels` deep and still moves forward on each step.
        let g = try InMemoryGuest()
        let top = try g.writer.createDomain(1, levels: 3)
        for i in 0..<512 as Range<UInt64> { g.writer.store(top | 3, at: top + i * 8) }
        var count = 0
        var faults = 0
        // Over 1 GiB: the level-3 entry aliases into 512 level-2 entries which
        // alias into 512 "level-1" entries, each a 4 KiB leaf at gpa `top`.
        SecondLevelWalker(memory: g.memory, caps: g.caps)
            .walk(table: top, levels: 3, start: 0, end: 1 << 30, leaf: { leaf in
                XCTAssertEqual(leaf.gpa, top)
                count += 1
            }, fault: { _ in faults += 1 })
        XCTAssertEqual(count, 512 * 512)
        XCTAssertEqual(faults, 0)
    }
}
