import Bridge
import Glibc
import VFIO
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// Whatever an untrusted guest writes into its tables, the daemon maps
/// nothing outside that VM's RAM, does not crash, bounds its work (the walk
/// budget, the quota, bounded fault records), and never drops a mapping the
/// guest may still have. Every test ends with the shadow equal to the kernel
/// double and every mapping inside guest RAM. docs/RELIABILITY.md, "Hostile
/// guest tables", lists what each one covers and which older tests it builds on.
final class HostileTableTests: SyncTestCase {
    static let fiveLevels = IOMMUCapabilities.make(addressWidth: 57, levels: [3, 4, 5])
    /// Most descriptors one INVALIDATE frame carries
    /// (`EventLimits.invalidations.upperBound`, Sources/Wire/EventLimits.swift;
    /// this test target does not depend on Wire).
    static let descriptorsPerFrame = 65_535

    // MARK: helpers

    /// Every mapping the kernel double holds lies inside one guest RAM region.
    func assertOnlyGuestRAMMapped(_ backend: RecordingBackend, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) {
        for (iova, m) in backend.mappings {
            let inside = guest.memory.regions.contains { r in
                m.hostAddress >= r.hostAddress && m.hostAddress - r.hostAddress < r.size && m.size <= r.size - (m.hostAddress - r.hostAddress)
            }
            XCTAssertTrue(inside, "\(what): iova 0x\(String(iova, radix: 16)) maps host 0x\(String(m.hostAddress, radix: 16)) + 0x\(String(m.size, radix: 16)), outside guest RAM",
                          file: file, line: line)
        }
    }

    /// The two invariants every test ends on.
    func assertSound(_ sid: SourceID, _ backend: RecordingBackend, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) {
        assertShadowMatchesKernel(sid, backend, file: file, line: line)
        assertOnlyGuestRAMMapped(backend, what, file: file, line: line)
    }

    /// What a new bridge with an empty shadow, the same walk budget and the
    /// same quota maps for `sid` from the guest's tables now (dry-run
    /// backend: it may map many thousands of entries cheaply).
    func reference(_ sid: SourceID, budget: Int = WalkBudget.defaultEntries, quota: Int? = nil) throws -> AddressSpace {
        let probe = try GuestIOMMU(caps: guest.caps, walkBudget: budget, logger: GuestFixture.quietLogger)
        _ = probe.setMemory(guest.memory)
        _ = probe.setRootTable(guest.writer.rootTable)
        _ = probe.setTranslationEnabled(true)
        try probe.attach(sid, backend: DryRunBackend(), mappingQuota: quota)
        return probe.spaces[sid]!
    }

    func budgetStop(_ space: AddressSpace) -> UInt64? {
        space.faults.recent.last { $0.reason == .walkBudgetExceeded }?.iova
    }

    var domainSync: InvalidationDescriptor { .iotlb(.domain(1), drainReads: false, drainWrites: false) }

    func assertSameEntries(_ got: [ShadowEntry], _ want: [ShadowEntry], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard got != want else { return }
        let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
        XCTFail("\(what): \(got.count) entries, want \(want.count); first difference at \(i): "
                + "\(i < got.count ? "\(got[i])" : "none") vs \(i < want.count ? "\(want[i])" : "none")", file: file, line: line)
    }

    // MARK: the walk budget

    /// The guest's tables send a full sync through 512^3 entries at low
    /// IOVAs. The sync stops where its budget runs out; what lies beyond is
    /// unknown, so it stays mapped — even a page the guest cleared behind
    /// the daemon's back, which a later sync past that point removes. What
    /// lies below is synced as usual, and once the guest fixes its tables a
    /// replay converges to a fresh walk.
    func testRunningOutOfBudgetKeepsEveryMappingFromTheStopPointOn() throws {
        bridge.walkBudget = 1 << 16
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend, mappingQuota: 1024)
        deliver(try guest.writer.attach(sid, domain: 1))
        let high: UInt64 = 0x7f80_0000_0000          // PML4 entry 255
        var batch = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)
        for i in 0..<64 as Range<UInt64> { batch += try guest.writer.map(domain: 1, iova: high + i * 4096, gpa: 0x10_0000 + i * 4096) }
        batch += try guest.writer.map(domain: 1, iova: high + (1 << 30), gpa: 0x20_0000, sizeShift: 21)
        deliver(batch)
        let highMappings = space(sid).shadow.entries.filter { $0.iova >= high }
        XCTAssertEqual(highMappings.count, 65)

        // PML4 entry 1 ([512 GiB, 1 TiB)) points at a table all of whose
        // entries point at itself.
        let alias = try guest.writer.createDomain(99)
        for i in 0..<512 as Range<UInt64> { guest.writer.store(alias | 3, at: alias + i * 8) }
        let top = guest.writer.domainTables[1]!.table
        guest.writer.store(alias | 3, at: top + 8)
        // And, without invalidating, a page below the stop point and one beyond it are cleared.
        _ = try guest.writer.unmap(domain: 1, iova: 0x2000)
        _ = try guest.writer.unmap(domain: 1, iova: high + 5 * 4096)
        backend.clearCalls()
        let first = deliver([domainSync])

        let faults = space(sid).faults
        XCTAssertEqual(faults.counts[.walkBudgetExceeded], 1)
        let stop = try XCTUnwrap(budgetStop(space(sid)))
        XCTAssertTrue(stop > 1 << 39 && stop < 2 << 39, "stopped at 0x\(String(stop, radix: 16)), inside the aliased PML4 entry")
        let detail = faults.recent.last { $0.reason == .walkBudgetExceeded }!.detail
        XCTAssertTrue(detail.contains("65536 paging entries") && detail.contains("walk-budget"), detail)
        // Below the stop point the sync did its work: the cleared page is gone.
        XCTAssertTrue(backend.calls.contains(.unmap(iova: 0x2000, size: 0x1000)))
        // At and beyond it, nothing was touched.
        for call in backend.calls {
            switch call {
            case let .map(iova, _, _, _), let .unmap(iova, _): XCTAssertLessThan(iova, stop, "\(call)")
            case .unmapAll: XCTFail("unmap-all")
            }
        }
        assertSameEntries(space(sid).shadow.entries.filter { $0.iova >= stop }, highMappings, "beyond the stop point")
        // The aliased leaves (4 KiB pages of the aliasing table itself: guest
        // RAM) filled the quota; the rest were refused, one fault for all.
        let aliased = space(sid).shadow.entries.filter { $0.iova >= 1 << 39 && $0.iova < stop }
        XCTAssertEqual(space(sid).shadow.count, 1024)
        XCTAssertEqual(aliased.count, 1024 - 66)
        XCTAssertTrue(aliased.allSatisfy { $0.hostAddress == host(alias) })
        XCTAssertEqual(faults.recent.filter { $0.reason == .quotaExceeded }.count, 1)
        // The same cut as a new bridge with the same budget makes: the walk
        // reads the same entries whether the replay's fast path runs or not.
        let fresh = try reference(sid, budget: 1 << 16)
        XCTAssertEqual(budgetStop(fresh), stop)
        let freshBelow = fresh.shadow.entries
        XCTAssertEqual(freshBelow.last.map { $0.iova < stop }, true)
        let ours = space(sid).shadow.entries.filter { $0.iova < stop }
        assertSameEntries(ours, Array(freshBelow.prefix(ours.count)), "below the stop point")
        XCTAssertEqual(UInt64(ours.count) + faults.counts[.quotaExceeded]!, UInt64(freshBelow.count),
                       "every leaf below the stop point is mapped or refused for the quota")
        XCTAssertEqual(first.report.faults, 1 + Int(faults.counts[.quotaExceeded]!))
        assertSound(sid, backend)

        // The same hostile tables again: the same cut, and no call at all.
        backend.clearCalls()
        deliver([domainSync])
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 2)
        XCTAssertEqual(budgetStop(space(sid)), stop)

        // The guest fixes its tables: a replay converges to a fresh walk,
        // which also removes the page cleared beyond the old stop point.
        guest.writer.store(0, at: top + 8)
        backend.clearCalls()
        _ = try bridge.replay(sid)
        XCTAssertTrue(backend.calls.contains(.unmap(iova: high + 5 * 4096, size: 0x1000)))
        assertSameEntries(space(sid).shadow.entries, try reference(sid, quota: 1024).shadow.entries, "after the fix")
        XCTAssertEqual(space(sid).shadow.count, 1 + 63 + 1)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 2)
        assertSound(sid, backend)
    }

    /// Beyond a stop point mappings stay only while they map guest RAM as
    /// installed now: after a new memory table that moved the guest's RAM
    /// (a VMM that mapped its memfd anew), a cut sync unmaps what lies
    /// beyond its stop point with the old host addresses, and a sync that
    /// reaches them after the guest fixes its tables maps them at the new
    /// ones. (Found by the sync fuzzer, FuzzRegressionTests.
    /// testABudgetCutSyncAfterANewMemoryTableKeepsNoOldHostAddress.)
    func testACutSyncAfterANewMemoryTableKeepsNoOldHostAddress() throws {
        bridge.walkBudget = 4096
        let backend = try attach(sid, domain: 1)
        let high: UInt64 = 0x7f80_0000_0000
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: high, gpa: 0x11000))
        let alias = try guest.writer.createDomain(99)
        for i in 0..<512 as Range<UInt64> { guest.writer.store(alias | 3, at: alias + i * 8) }
        let top = guest.writer.domainTables[1]!.table
        guest.writer.store(alias | 3, at: top + 8)
        // Cut before the high mapping, which stays.
        _ = try bridge.replay(sid)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 1)
        XCTAssertTrue(space(sid).shadow.entries.contains { $0.iova == high })

        // The same contents at new host addresses.
        let fresh = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 64 << 20, backing: .anonymous)])
        for page in stride(from: UInt64(56) << 20, to: 64 << 20, by: 4096) {
            fresh.write(gpa: page, bytes: guest.memory.read(gpa: page, count: 4096)!)
        }
        backend.clearCalls()
        let r = bridge.setMemory(fresh)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 2)
        XCTAssertTrue(backend.calls.contains(.unmap(iova: high, size: 4096)), "\(backend.calls.prefix(4))")
        XCTAssertFalse(space(sid).shadow.entries.contains { $0.iova == high })
        XCTAssertEqual(r.failures, [])
        for e in space(sid).shadow.entries {
            XCTAssertNotNil(fresh.gpa(hostAddress: e.hostAddress, size: e.size), "iova 0x\(String(e.iova, radix: 16)) maps outside the RAM installed now")
        }
        assertShadowMatchesKernel(sid, backend)

        // Fixed tables: the high mapping comes back, at its new host address.
        fresh.mutableTablePage(at: top)![1] = 0
        _ = try bridge.replay(sid)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 2)
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000, high])
        XCTAssertEqual(backend.mappings[high]?.hostAddress, fresh.hostAddress(gpa: 0x11000, size: 4096))
        assertShadowMatchesKernel(sid, backend)
    }

    /// A legitimate space larger than the budget: a full sync stops inside
    /// it and changes nothing beyond (a replay stays zero-ioctl);
    /// page-selective invalidations beyond the stop point still work, and
    /// raising the budget lets a full sync through.
    func testASpaceLargerThanTheBudgetKeepsItsMappingsAndItsPageInvalidations() throws {
        bridge.walkBudget = 2048
        let backend = try attach(sid, domain: 1)
        for chunk in 0..<3 as Range<UInt64> {
            // 1000 pages per sync: ~1000 entries read, within the budget.
            deliver(try (0..<1000 as Range<UInt64>).flatMap { i in
                try guest.writer.map(domain: 1, iova: (chunk * 1000 + i) * 4096, gpa: 0x10_0000 + (chunk * 1000 + i) * 4096)
            })
        }
        XCTAssertEqual(space(sid).shadow.count, 3000)
        XCTAssertEqual(space(sid).faults.total, 0)
        let all = space(sid).shadow.entries
        backend.clearCalls()
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 1)
        let stop = try XCTUnwrap(budgetStop(space(sid)))
        XCTAssertTrue(stop > 1000 * 4096 && stop < 3000 * 4096, "0x\(String(stop, radix: 16))")
        XCTAssertEqual(space(sid).shadow.entries, all)
        // A page cleared beyond the stop point, and invalidated: unmapped.
        deliver(try guest.writer.unmap(domain: 1, iova: 2500 * 4096))
        XCTAssertEqual(backend.calls, [.unmap(iova: 2500 * 4096, size: 4096)])
        // The budget raised: a full sync goes through, and finds nothing to do.
        bridge.walkBudget = WalkBudget.defaultEntries
        backend.clearCalls()
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 1)
        assertSameEntries(space(sid).shadow.entries, try reference(sid).shadow.entries, "with the default budget")
        assertSound(sid, backend)
    }

    /// The default budget's headroom: the benchmark's space, 1,048,576
    /// leaves of 4 KiB (a 4 GiB space, ~1.05M entries read), syncs whole
    /// and replays with no call and no fault.
    func testAMillionLeafSpaceFitsTheDefaultBudget() throws {
        guest = try GuestFixture(ramSize: 64 << 20, tableAreaSize: 16 << 20)
        bridge = try guest.makeBridge()
        let backend = DryRunBackend()
        try bridge.attach(sid, backend: backend)
        deliver(try guest.writer.attach(sid, domain: 1))
        for t in 0..<2048 as Range<UInt64> {
            // One leaf through the writer creates the level-1 table; the other
            // 511 are stored into it directly.
            _ = try guest.writer.map(domain: 1, iova: t << 21, gpa: 0)
            let table = guest.writer.existingSlot(domain: 1, iova: t << 21, level: 1)!
            let page = guest.memory.mutableTablePage(at: table)!
            for i in 0..<512 as Range<UInt64> {
                page[Int(i)] = ((((t << 9) | i) % 12288) << 12 | 3).littleEndian
            }
        }
        let r = deliver([domainSync])
        XCTAssertEqual(r.report.maps, 1 << 20)
        XCTAssertEqual(space(sid).shadow.count, 1 << 20)
        XCTAssertEqual(space(sid).faults.total, 0)
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        XCTAssertEqual(space(sid).faults.total, 0)
        XCTAssertEqual(backend.maps, 1 << 20)
    }

    /// An entry at each level pointing at its own table or at a
    /// higher-level table on its own path, for 4- and 5-level tables. As
    /// written (sparse tables) the aliasing is bounded: the sync equals a
    /// fresh walk. With the aliased table's empty entries also pointing at
    /// it, the walk explodes (512^level entries) and the budget cuts it, at
    /// the same place a fresh walk with that budget does, and the mappings
    /// beyond the cut stay.
    func testEntriesPointingAtTheirOwnOrAHigherTableAtEveryLevel() throws {
        let budget = 50_000
        let quota = 1024
        for levels in [4, 5] {
            for k in 1...levels {
                for j in k...levels {
                    for dense in [false, true] {
                        let what = "\(levels)-level, level-\(k) entry → level-\(j) table\(dense ? ", that table aliased" : "")"
                        try setUpGuest(caps: levels == 5 ? Self.fiveLevels : .make())
                        bridge.walkBudget = budget
                        let backend = RecordingBackend()
                        try bridge.attach(sid, backend: backend, mappingQuota: quota)
                        deliver(try guest.writer.attach(sid, domain: 1, levels: levels))
                        let high: UInt64 = levels == 5 ? 2 << 48 : 0x7f80_0000_0000
                        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)
                                + guest.writer.map(domain: 1, iova: high, gpa: 0x12000) + guest.writer.map(domain: 1, iova: high + 0x1000, gpa: 0x13000))
                        let original = space(sid).shadow.entries
                        let slot = try XCTUnwrap(guest.writer.existingSlot(domain: 1, iova: 0x1000, level: k))
                        let target = try XCTUnwrap(guest.writer.existingSlot(domain: 1, iova: 0x1000, level: j)) & ~0xfff
                        let good = guest.writer.load(slot)
                        var filled: [UInt64] = []
                        if dense {
                            for i in 0..<512 as Range<UInt64> where guest.writer.load(target + i * 8) & 3 == 0 {
                                guest.writer.store(target | 3, at: target + i * 8)
                                filled.append(target + i * 8)
                            }
                        }
                        guest.writer.store(target | 3, at: slot)
                        backend.clearCalls()
                        deliver([domainSync])

                        // A table read at level 2 or above whose entries all
                        // lead back to it costs 512^level entries.
                        let explodes = dense && j >= 2
                        let s = space(sid)
                        XCTAssertEqual(s.faults.counts[.walkBudgetExceeded] ?? 0, explodes ? 1 : 0, what)
                        XCTAssertEqual(s.shadow.entries.filter { $0.iova >= high }, original.filter { $0.iova >= high }, "\(what): the high mappings")
                        let fresh = try reference(sid, budget: budget, quota: quota)
                        if let stop = budgetStop(s) {
                            XCTAssertEqual(budgetStop(fresh), stop, what)
                            for call in backend.calls {
                                if case let .map(iova, _, _, _) = call { XCTAssertLessThan(iova, stop, what) }
                                if case let .unmap(iova, _) = call { XCTAssertLessThan(iova, stop, what) }
                            }
                            let ours = s.shadow.entries.filter { $0.iova < stop }
                            assertSameEntries(ours, Array(fresh.shadow.entries.prefix(ours.count)), "\(what): below the stop point")
                            XCTAssertEqual(UInt64(ours.count) + (s.faults.counts[.quotaExceeded] ?? 0),
                                           UInt64(fresh.shadow.count) + (fresh.faults.counts[.quotaExceeded] ?? 0), what)
                        } else {
                            assertSameEntries(s.shadow.entries, fresh.shadow.entries, what)
                        }
                        XCTAssertLessThanOrEqual(s.shadow.count, quota, what)
                        assertSound(sid, backend, what)

                        // Fixed: back to the original mappings, no new budget fault.
                        guest.writer.store(good, at: slot)
                        for a in filled { guest.writer.store(0, at: a) }
                        _ = try bridge.replay(sid)
                        assertSameEntries(s.shadow.entries, original, "\(what): after the fix")
                        XCTAssertEqual(s.faults.counts[.walkBudgetExceeded] ?? 0, explodes ? 1 : 0, what)
                        assertSound(sid, backend, "\(what): after the fix")
                    }
                }
            }
        }
    }

    /// The default budget stops a fully self-referencing 4-level table too,
    /// and the quota keeps what such a table maps (and plans) small.
    func testTheDefaultBudgetStopsAFullySelfReferencingTable() throws {
        XCTAssertEqual(bridge.walkBudget, WalkBudget.defaultEntries)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend, mappingQuota: 256)
        deliver(try guest.writer.attach(sid, domain: 1))
        let top = guest.writer.domainTables[1]!.table
        for i in 0..<512 as Range<UInt64> { guest.writer.store(top | 3, at: top + i * 8) }
        let r = deliver([domainSync])
        XCTAssertEqual(space(sid).faults.counts[.walkBudgetExceeded], 1)
        XCTAssertEqual(r.report.maps, 256)
        XCTAssertEqual(space(sid).shadow.count, 256)
        // 4,194,304 entries read: the PML4 entry, then a level-3 entry per
        // GiB and a level-2 entry per 2 MiB, each before its 512 level-1
        // entries, all leaves (mapping the table page).
        var left = 4_194_304, leaves: UInt64 = 0
        func read() -> Bool {
            guard left > 0 else { return false }
            left -= 1
            return true
        }
        _ = read()
        walk: while read() {
            for _ in 0..<512 {
                guard read() else { break walk }
                for _ in 0..<512 {
                    guard read() else { break walk }
                    leaves += 1
                }
            }
        }
        XCTAssertEqual(leaves, 4_186_111)
        XCTAssertEqual(space(sid).faults.counts[.quotaExceeded], leaves - 256)
        XCTAssertEqual(space(sid).faults.recent.count, 2, "one budget fault, one quota fault")
        assertSound(sid, backend)
    }

    // MARK: tables and leaves outside RAM

    /// Three RAM regions: [0, 64 MiB) (tables at its top), [64, 68 MiB)
    /// adjacent in GPA but a separate host mapping, and [4 GiB, +16 MiB).
    func testTablesAndLeavesOutsideOrAcrossRAMRegions() throws {
        try setUpGuest(caps: Self.fiveLevels,
                       extraRegions: [GuestRAMRegionSpec(gpa: 64 << 20, size: 4 << 20, backing: .anonymous),
                                      GuestRAMRegionSpec(gpa: 4 << 30, size: 16 << 20, backing: .anonymous)])
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        deliver(try guest.writer.attach(sid, domain: 1, levels: 5))
        var batch: [InvalidationDescriptor] = []
        // A table pointer at each level 5…2 leads outside RAM: one fault each,
        // nothing below. IOVA n << 48 is under PML5 entry n.
        for level in 2...5 {
            let iova = UInt64(level) << 48
            batch += try guest.writer.map(domain: 1, iova: iova, gpa: 0x10000)
            try guest.writer.storeEntry(domain: 1, iova: iova, level: level, raw: (1 << 40) | 3)
        }
        // Leaves: the last page of region 0, of region 1 (fine); a page in
        // the hole after region 1 and one past region 2; a 2 MiB leaf inside
        // region 2 (fine); a 1 GiB leaf from region 2's start, which runs past its end.
        batch += try guest.writer.map(domain: 1, iova: 0x1000, gpa: (64 << 20) - 4096)
        batch += try guest.writer.map(domain: 1, iova: 0x2000, gpa: (68 << 20) - 4096)
        batch += try guest.writer.map(domain: 1, iova: 0x3000, gpa: 68 << 20)
        batch += try guest.writer.map(domain: 1, iova: 0x4000, gpa: (4 << 30) + (16 << 20))
        batch += try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 4 << 30, sizeShift: 21)
        batch += try guest.writer.map(domain: 1, iova: 0x4000_0000, gpa: 4 << 30, sizeShift: 30)
        // A page table that lives in region 1: fine.
        try guest.writer.storeEntry(domain: 1, iova: 0x8000_0000, level: 2, raw: (64 << 20) | 3)
        guest.writer.store((0x7000) | 3, at: 64 << 20)
        batch += [guest.writer.pageInvalidation(domain: 1, iova: 0x8000_0000, sizeShift: 12)]
        // With a domain-selective invalidation in the batch, the space is
        // synced once, whole.
        let r = bridge.process(batch + [domainSync])
        XCTAssertNil(r.rejected)
        let s = space(sid)
        XCTAssertEqual(s.faults.counts[.tableOutsideRAM], 4)
        XCTAssertEqual(Set(s.faults.recent.filter { $0.reason == .tableOutsideRAM }.compactMap(\.level)), [1, 2, 3, 4])
        XCTAssertEqual(s.faults.counts[.leafOutsideRAM], 3)
        XCTAssertEqual(s.shadow.entries.map(\.iova), [0x1000, 0x2000, 0x20_0000, 0x8000_0000])
        XCTAssertEqual(backend.mappings[0x2000]?.hostAddress, guest.memory.hostAddress(gpa: (68 << 20) - 4096, size: 4096))
        XCTAssertEqual(backend.mappings[0x8000_0000]?.hostAddress, host(0x7000))
        assertSameEntries(s.shadow.entries, try reference(sid).shadow.entries, "against a fresh walk")
        assertSound(sid, backend)

        // The top-level table itself outside RAM (a context entry's SLPTPTR):
        // one fault per sync, nothing mapped.
        let b2 = RecordingBackend()
        try bridge.attach(sid2, backend: b2)
        deliver(try guest.writer.writeContext(sid2, ContextEntry.encode(secondLevelTable: 1 << 40, domainID: 5, levels: 5), previousDomain: nil))
        XCTAssertEqual(space(sid2).faults.counts[.tableOutsideRAM], 1)
        XCTAssertEqual(space(sid2).faults.recent.first?.level, 5)
        XCTAssertEqual(b2.calls, [])
        assertSound(sid2, b2)
    }

    // MARK: reserved bits

    /// Reserved bits in the root entry, the context entry, and a
    /// second-level entry at every level 1–5, leaf and non-leaf, through
    /// the sync: the reason the spec gives, nothing mapped below the entry,
    /// a neighbour under another PML5 entry untouched, and all back once
    /// the entry is fixed.
    func testReservedBitsAtEveryLevelMapNothingBelowTheEntry() throws {
        // (level, leaf size shift or nil for a table entry, bits to add)
        let cases: [(Int, Int?, UInt64)] = [
            (1, 12, 1 << 11),       // SNP without ECAP.SC
            (1, 12, 1 << 62),       // TM without ECAP.DT
            (2, 21, 1 << 12),       // a 2 MiB frame with bit 12 set
            (2, 21, 1 << 11),
            (2, nil, 1 << 11),      // SNP in a non-leaf entry
            (3, 30, 1 << 20),       // a 1 GiB frame with bit 20 set
            (3, nil, 1 << 62),      // TM in a non-leaf entry
            (4, nil, 1 << 11),
            (4, nil, 0x80),         // PS at level 4: no 512 GiB leaves
            (5, nil, 1 << 62),
            (5, nil, 0x80),         // PS at level 5
        ]
        let victim: UInt64 = 1 << 48           // PML5 entry 1
        let neighbour: UInt64 = 3 << 48        // PML5 entry 3
        for (level, leafShift, bits) in cases {
            let what = "level \(level) \(leafShift.map { "leaf 2^\($0)" } ?? "table") bits 0x\(String(bits, radix: 16))"
            // 2 GiB of RAM (sparse): room for a 1 GiB leaf.
            try setUpGuest(ramSize: 2 << 30, caps: Self.fiveLevels)
            let backend = RecordingBackend()
            try bridge.attach(sid, backend: backend)
            deliver(try guest.writer.attach(sid, domain: 1, levels: 5))
            let shift = leafShift ?? 12
            deliver(try guest.writer.map(domain: 1, iova: victim, gpa: 0, sizeShift: shift)
                    + guest.writer.map(domain: 1, iova: neighbour, gpa: 0x10000))
            let original = space(sid).shadow.entries
            XCTAssertEqual(original.count, 2, what)
            let slot = try XCTUnwrap(guest.writer.existingSlot(domain: 1, iova: victim, level: level))
            let good = guest.writer.load(slot)
            guest.writer.store(good | bits, at: slot)
            backend.clearCalls()
            deliver([domainSync])
            XCTAssertEqual(space(sid).faults.counts[.entryReserved], 1, what)
            XCTAssertEqual(space(sid).faults.recent.first?.level, level, what)
            XCTAssertEqual(backend.calls, [.unmap(iova: victim, size: 1 << UInt64(shift))], what)
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [neighbour], what)
            assertSound(sid, backend, what)
            guest.writer.store(good, at: slot)
            _ = try bridge.replay(sid)
            XCTAssertEqual(space(sid).shadow.entries, original, what)
            assertSound(sid, backend, what)
        }

        // Root entry (bit 1, then the upper half) and context entry (bit 4,
        // then bit 71): the device's requests are blocked, everything is
        // unmapped in one call, and the reason names the entry.
        try setUpGuest(caps: Self.fiveLevels)
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        deliver(try guest.writer.attach(sid, domain: 1, levels: 5))
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        let rootSlot = guest.writer.rootTable + UInt64(sid.bus) * 16
        let contextSlot = try guest.writer.contextTable(bus: sid.bus) + UInt64(sid.devfn) * 16
        let contextCache = InvalidationDescriptor.contextCache(.global)
        for (address, bits, reason) in [(rootSlot, UInt64(2), FaultReason.rootEntryReserved), (rootSlot + 8, 1, .rootEntryReserved),
                                        (contextSlot, 0x10, .contextEntryReserved), (contextSlot + 8, 0x80, .contextEntryReserved)] {
            let good = guest.writer.load(address)
            let before = space(sid).faults.counts[reason] ?? 0
            guest.writer.store(good | bits, at: address)
            backend.clearCalls()
            deliver([contextCache, domainSync])
            XCTAssertEqual(space(sid).faults.counts[reason], before + 1, "\(reason)")
            XCTAssertEqual(backend.calls, [.unmapAll], "\(reason)")
            XCTAssertTrue(space(sid).shadow.isEmpty)
            guest.writer.store(good, at: address)
            deliver([contextCache])
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000], "\(reason): fixed")
            assertSound(sid, backend)
        }
    }

    /// Large leaves where the caps do not allow them: PS at level 4 or 5
    /// (no such leaf size exists), a 1 GiB leaf without CAP.SLLPS 1 GiB, a
    /// 2 MiB leaf without 2 MiB support. Each is a reserved-bit fault and
    /// maps nothing; the page sizes the caps do allow still map.
    func testLargeLeavesAtLevelsTheCapsDoNotAllow() throws {
        // PS at levels 4 and 5, 5-level tables, pointing at a 1 GiB-aligned frame.
        try setUpGuest(caps: Self.fiveLevels)
        var backend = RecordingBackend()
        try bridge.attach(sid, backend: backend)
        deliver(try guest.writer.attach(sid, domain: 1, levels: 5))
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        try guest.writer.storeEntry(domain: 1, iova: 1 << 48, level: 5, raw: 0x83)
        try guest.writer.storeEntry(domain: 1, iova: 1 << 39, level: 4, raw: 0x83)
        deliver([domainSync])
        XCTAssertEqual(space(sid).faults.counts[.entryReserved], 2)
        XCTAssertEqual(Set(space(sid).faults.recent.compactMap(\.level)), [4, 5])
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000])
        assertSound(sid, backend)

        // 2 MiB supported, 1 GiB not; then neither.
        for (has2M, has1G) in [(true, false), (false, true), (false, false)] {
            try setUpGuest(ramSize: 2 << 30, caps: .make(largePages2M: has2M, largePages1G: has1G))
            backend = RecordingBackend()
            try bridge.attach(sid, backend: backend)
            deliver(try guest.writer.attach(sid, domain: 1))
            let r = bridge.process(try guest.writer.map(domain: 1, iova: 0x4000_0000, gpa: 0, sizeShift: 30)
                                   + guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x20_0000, sizeShift: 21)
                                   + guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
            XCTAssertNil(r.rejected)
            let refused = (has2M ? 0 : 1) + (has1G ? 0 : 1)
            XCTAssertEqual(space(sid).faults.counts[.entryReserved] ?? 0, UInt64(refused), "2M \(has2M) 1G \(has1G)")
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova),
                           [0x1000] + (has2M ? [0x20_0000] : []) + (has1G ? [0x4000_0000] : []), "2M \(has2M) 1G \(has1G)")
            XCTAssertEqual(backend.calls.count, 3 - refused)
            assertSound(sid, backend)
        }
    }

    /// A context entry whose AW selects a depth CAP.SAGAW does not
    /// advertise (or a reserved AW encoding) is invalid: nothing is mapped
    /// for the device, and a valid AW brings its mappings back.
    func testAddressWidthsNotInSAGAW() throws {
        try setUpGuest(caps: .make(levels: [4]))
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        let table = guest.writer.domainTables[1]!.table
        let good = ContextEntry.encode(secondLevelTable: table, domainID: 1, levels: 4)
        for aw: UInt64 in [0, 1, 3, 4, 5, 6, 7] {
            let before = space(sid).faults.counts[.contextEntryInvalid] ?? 0
            backend.clearCalls()
            deliver(try guest.writer.writeContext(sid, ContextEntry(low: good.low, high: (good.high & ~7) | aw), previousDomain: 1))
            XCTAssertEqual(space(sid).faults.counts[.contextEntryInvalid], before + 1, "AW \(aw)")
            XCTAssertTrue(space(sid).faults.recent.last!.detail.contains("SAGAW"), "AW \(aw)")
            XCTAssertEqual(backend.calls, [.unmapAll], "AW \(aw)")
            deliver(try guest.writer.writeContext(sid, good, previousDomain: 1))
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000], "AW \(aw): valid again")
            assertSound(sid, backend)
        }
    }

    // MARK: invalidations

    /// Page-selective invalidations with an address mask above CAP.MAMV, or
    /// one whose 2^AM pages would wrap past 2^64 (when the VMM advertises a
    /// MAMV that large): the batch stops there, the reason names the
    /// descriptor's index, what came before it ran and nothing after it did.
    /// AM 52 (the whole 64-bit space, possible only with such a MAMV) syncs
    /// the whole space.
    func testHugeAddressMasksRefuseTheBatchAtTheirIndex() throws {
        for mamv in [18, 63] {
            try setUpGuest(caps: .make(maxAddressMask: mamv))
            let backend = try attach(sid, domain: 1)
            _ = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
            _ = try guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)
            let page1 = guest.writer.pageInvalidation(domain: 1, iova: 0x1000, sizeShift: 12).encoded
            let page2 = guest.writer.pageInvalidation(domain: 1, iova: 0x2000, sizeShift: 12).encoded
            let low: UInt64 = 0x0001_0032       // IOTLB, page-selective, DID 1
            let faultsBefore = space(sid).faults.total
            for am: UInt64 in (mamv == 18 ? [19, 63] : [53, 63]) {
                let r = bridge.process([page1, (low, 0xffff_ffff_ffff_f000 | am), page2, GuestTableWriter<GuestRAM>.wait.encoded])
                XCTAssertEqual(r.rejected?.index, 1, "MAMV \(mamv) AM \(am)")
                let reason = r.rejected?.reason ?? ""
                XCTAssertTrue(reason.hasPrefix("descriptor 1: "), reason)
                XCTAssertTrue(reason.contains(mamv == 18 ? "above CAP.MAMV 18" : "wrap past 2^64"), reason)
                XCTAssertEqual(r.waits, 0)
                XCTAssertEqual(backend.calls, [map(0x1000, 0x10000)], "only what came before it")
                XCTAssertEqual(space(sid).faults.total, faultsBefore)
                assertSound(sid, backend)
            }
            if mamv == 63 {
                backend.clearCalls()
                deliver([.iotlb(.pages(domainID: 1, address: 0x1234_5000, addressMask: 52, invalidationHint: false), drainReads: false, drainWrites: false)])
                XCTAssertEqual(backend.calls, [map(0x2000, 0x11000)], "AM 52: the whole space")
                assertSound(sid, backend)
            }
        }
    }

    /// Invalidations naming domains no attached device uses do nothing:
    /// no sync, no call, no fault, even while the used domain has changes
    /// waiting for their own invalidation.
    func testInvalidationsForUnusedDomainsAreNoOps() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        try guest.writer.createDomain(7)
        _ = try guest.writer.map(domain: 7, iova: 0x1000, gpa: 0x20000)
        _ = try guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)      // not yet invalidated
        let syncs = space(sid).syncs
        backend.clearCalls()
        let r = deliver([
            .iotlb(.pages(domainID: 7, address: 0x1000, addressMask: 0, invalidationHint: false), drainReads: false, drainWrites: false),
            .iotlb(.pages(domainID: 7, address: 0, addressMask: 18, invalidationHint: false), drainReads: true, drainWrites: true),
            .iotlb(.domain(7), drainReads: false, drainWrites: false),
            .iotlb(.domain(65535), drainReads: false, drainWrites: false),
            .contextCache(.domain(7)),
            .contextCache(.device(domainID: 7, sourceID: sid2, functionMask: 0)),
            .deviceTLB(sourceID: sid2, address: 0x1000, sizeBit: false),
        ])
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(r.report, SyncReport())
        XCTAssertEqual(space(sid).syncs, syncs)
        XCTAssertEqual(space(sid).faults.total, 0)
        assertSound(sid, backend)
    }

    /// A million page-selective invalidations, in frames as full as the
    /// event channel allows, with a wait every 4096: they complete, the
    /// result is exactly what the tables say, and nothing the daemon keeps
    /// grows with their number (the shadow, the fault log, the calls made).
    func testAMillionInvalidationsInFullFrames() throws {
        let backend = try attach(sid, domain: 1)
        let b2 = try attach(sid2, domain: 2)
        // 2048 pages two pages apart (so that the ranges of a batch do not
        // coalesce), 8 of them outside RAM (a fault at each of their syncs).
        var setup: [InvalidationDescriptor] = []
        for i in 0..<2048 as Range<UInt64> {
            let gpa: UInt64 = i % 256 == 7 ? (1 << 40) + i * 4096 : 0x10_0000 + i * 4096
            setup += try guest.writer.map(domain: 1, iova: i * 8192, gpa: gpa)
        }
        setup += try guest.writer.map(domain: 2, iova: 0x1000, gpa: 0x10000)
        deliver(setup)
        XCTAssertEqual(space(sid).shadow.count, 2040)
        let allocated = space(sid).shadow.allocatedBytes
        let syncsBefore = space(sid).syncs
        backend.clearCalls()

        var rng = SplitMix64(state: 6)
        var sent = 0
        var frames = 0
        var changed = 0
        while sent < 1_000_000 {
            // Between frames the guest changes a few pages, as a driver
            // would; the flood invalidates them along with everything else
            // (the last frame, changing nothing, covers every page).
            for _ in 0..<(frames < 15 ? 4 : 0) {
                let i = UInt64.random(in: 0..<2048, using: &rng)
                if i % 256 == 7 { continue }
                _ = try guest.writer.map(domain: 1, iova: i * 8192, gpa: 0x10_0000 + UInt64.random(in: 0..<4096, using: &rng) * 4096)
                changed += 1
            }
            let count = min(Self.descriptorsPerFrame, 1_000_000 - sent)
            var frame: [(low: UInt64, high: UInt64)] = []
            frame.reserveCapacity(count)
            for n in 0..<count {
                if n % 4096 == 4095 || n == count - 1 {
                    frame.append(GuestTableWriter<GuestRAM>.wait.encoded)
                    continue
                }
                let did: UInt16 = [1, 1, 1, 2, 9][Int.random(in: 0..<5, using: &rng)]
                let iova = UInt64.random(in: 0..<2048, using: &rng) * 8192
                frame.append(guest.writer.pageInvalidation(domain: did, iova: iova, sizeShift: 12).encoded)
            }
            let r = bridge.process(frame)
            XCTAssertNil(r.rejected)
            XCTAssertEqual(r.report.failures, [])
            XCTAssertEqual(r.waits, (count + 4095) / 4096)
            sent += count
            frames += 1
        }
        XCTAssertEqual(frames, 16)
        XCTAssertGreaterThan(changed, 0)
        // Exactly what the tables say, for both devices.
        assertSameEntries(space(sid).shadow.entries, try reference(sid).shadow.entries, "device 1 after the flood")
        assertSameEntries(space(sid2).shadow.entries, try reference(sid2).shadow.entries, "device 2 after the flood")
        assertSound(sid, backend)
        assertSound(sid2, b2)
        // Bounded: the shadow holds the same 2040 pages in the same memory;
        // calls only for the pages that changed (an unmap and a map each);
        // a fault per sync of an out-of-RAM page, in a fixed-size log.
        XCTAssertEqual(space(sid).shadow.count, 2040)
        XCTAssertEqual(space(sid).shadow.allocatedBytes, allocated)
        XCTAssertLessThanOrEqual(backend.calls.count, 2 * changed)
        // One sync per space per frame, each meeting the out-of-RAM pages.
        XCTAssertGreaterThanOrEqual(space(sid).faults.counts[.leafOutsideRAM] ?? 0, UInt64(frames))
        XCTAssertEqual(space(sid).syncs - syncsBefore, frames, "one sync per frame, however many waits it holds")
        XCTAssertLessThanOrEqual(space(sid).faults.recent.count, space(sid).faults.recentCapacity)
        XCTAssertEqual(b2.calls.count, 1, "device 2's one page, mapped at setup")
    }

    // MARK: storms

    /// A guest that asks for far more mappings than its quota: one fault per
    /// sync carrying the count, and exactly the mappings the quota allows,
    /// in IOVA order, as before the refusals were counted in one.
    func testAQuotaRefusalStormIsOneFaultPerSync() throws {
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend, mappingQuota: 64)
        deliver(try guest.writer.attach(sid, domain: 1))
        let r = bridge.process(try (0..<10_000 as Range<UInt64>).flatMap { try guest.writer.map(domain: 1, iova: $0 * 4096, gpa: 0x10_0000 + ($0 % 4096) * 4096) })
        XCTAssertEqual(backend.calls, (0..<64 as Range<UInt64>).map { map($0 * 4096, 0x10_0000 + $0 * 4096) })
        XCTAssertEqual(r.report.faults, 10_000 - 64)
        XCTAssertEqual(space(sid).faults.counts[.quotaExceeded], 10_000 - 64)
        let quotaFaults = space(sid).faults.recent.filter { $0.reason == .quotaExceeded }
        XCTAssertEqual(quotaFaults.count, 1)
        XCTAssertEqual(quotaFaults.first?.iova, 64 * 4096)
        XCTAssertTrue(quotaFaults.first!.detail.contains("9936 mappings refused"), quotaFaults.first!.detail)
        XCTAssertTrue(quotaFaults.first!.detail.contains("quota of 64"), quotaFaults.first!.detail)

        // Ten mapped pages cleared (five at the start, five at the end of
        // what is mapped): a full sync frees their room and fills it with
        // the next pages in IOVA order.
        let cleared: [UInt64] = [0, 1, 2, 3, 4, 59, 60, 61, 62, 63]
        for i in cleared { _ = try guest.writer.unmap(domain: 1, iova: i * 4096) }
        backend.clearCalls()
        deliver([domainSync])
        let expected = (0..<10_000 as Range<UInt64>).filter { !cleared.contains($0) }.prefix(64).map { $0 * 4096 }
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), Array(expected))
        XCTAssertEqual(backend.calls.filter { if case .unmap = $0 { return true } else { return false } }.count, 10)
        XCTAssertEqual(space(sid).faults.recent.filter { $0.reason == .quotaExceeded }.count, 2)
        assertSound(sid, backend)
    }

    /// At its quota, a space whose guest replaced its mappings by others at
    /// lower IOVAs: the new ones come before the unmaps of the old ones in
    /// IOVA order, and wait for them instead of being refused (they were
    /// refused, and the space left empty, before this was fixed).
    func testMapsWaitForTheUnmapsOfTheSameSyncUnderTheQuota() throws {
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend, mappingQuota: 4)
        deliver(try guest.writer.attach(sid, domain: 1))
        deliver(try (0..<4 as Range<UInt64>).flatMap { try guest.writer.map(domain: 1, iova: 0x10_0000 + $0 * 4096, gpa: 0x10000 + $0 * 4096) })
        for i in 0..<4 as Range<UInt64> {
            _ = try guest.writer.unmap(domain: 1, iova: 0x10_0000 + i * 4096)
            _ = try guest.writer.map(domain: 1, iova: 0x1000 + i * 4096, gpa: 0x20000 + i * 4096)
        }
        // One more than the quota allows: refused, and counted once.
        _ = try guest.writer.map(domain: 1, iova: 0x8000, gpa: 0x30000)
        backend.clearCalls()
        deliver([domainSync])
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000, 0x2000, 0x3000, 0x4000])
        XCTAssertEqual(backend.calls, (0..<4 as Range<UInt64>).map { .unmap(iova: 0x10_0000 + $0 * 4096, size: 4096) }
                                      + (0..<4 as Range<UInt64>).map { map(0x1000 + $0 * 4096, 0x20000 + $0 * 4096) })
        XCTAssertEqual(space(sid).faults.counts[.quotaExceeded], 1)
        XCTAssertEqual(space(sid).faults.recent.last?.iova, 0x8000)
        assertSound(sid, backend)
    }

    /// Twenty thousand leaves outside RAM, found in one sync: all counted,
    /// the first 64 kept whole, the rest as one count; the fault log's
    /// recent list stays at its capacity.
    func testAFaultStormIsCountedInFullAndKeptSmall() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000_0000, gpa: 0x10000))
        for i in 0..<20_000 as Range<UInt64> {
            try guest.writer.storeEntry(domain: 1, iova: i * 4096, level: 1, raw: (1 << 40) | (i << 12) | 3)
        }
        for i in 0..<512 as Range<UInt64> {
            // And a table full of reserved bits (SNP in a non-leaf entry at level 2).
            try guest.writer.storeEntry(domain: 1, iova: (1 << 30) + i * (2 << 20), level: 2, raw: 0x2000 | (1 << 11) | 3)
        }
        backend.clearCalls()
        let r = deliver([domainSync])
        XCTAssertEqual(r.report.faults, 20_512)
        XCTAssertEqual(space(sid).faults.counts[.leafOutsideRAM], 20_000)
        XCTAssertEqual(space(sid).faults.counts[.entryReserved], 512)
        XCTAssertEqual(space(sid).faults.recent.count, space(sid).faults.recentCapacity)
        let summaries = space(sid).faults.recent.filter { $0.detail.contains("more") }
        XCTAssertEqual(summaries.map(\.reason), [.entryReserved, .leafOutsideRAM])
        XCTAssertTrue(summaries.last!.detail.contains("\(20_000 - 64) more"), summaries.last!.detail)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000_0000])
        assertSound(sid, backend)
    }
}
