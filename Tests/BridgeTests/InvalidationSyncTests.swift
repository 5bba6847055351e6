import Bridge
import Glibc
import VFIO
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// Exact MAP/UNMAP sequences for each kind of invalidation.
final class InvalidationSyncTests: SyncTestCase {
    func testAttachingAnEmptyDomainMapsNothing() throws {
        let backend = try attach(sid, domain: 1)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(space(sid).context, .translated(domainID: 1, table: guest.writer.domainTables[1]!.table, levels: 4))
    }

    func testPageSelectiveMapUnmapAndRemap() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        XCTAssertEqual(backend.calls, [map(0x1000, 0x10000)])

        backend.clearCalls()
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x20000, permission: .read))
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000), map(0x1000, 0x20000, 4096, .read)])

        backend.clearCalls()
        deliver(try guest.writer.unmap(domain: 1, iova: 0x1000))
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000)])
        XCTAssertTrue(space(sid).shadow.isEmpty)
        assertShadowMatchesKernel(sid, backend)
    }

    func testPageSelectiveWalksOnlyItsRangeAndDomain() throws {
        let a = try attach(sid, domain: 1)
        let b = try attach(sid2, domain: 2)
        // Two pages written, but only the second invalidated: only it is
        // walked, so only it is mapped (a correct guest invalidates both).
        _ = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        deliver(try guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        XCTAssertEqual(a.calls, [map(0x2000, 0x11000)])
        XCTAssertEqual(b.calls, [])
        // An invalidation for a DID no device uses does nothing.
        deliver([.iotlb(.pages(domainID: 9, address: 0x1000, addressMask: 0, invalidationHint: false), drainReads: false, drainWrites: false)])
        XCTAssertEqual(a.calls, [map(0x2000, 0x11000)])
    }

    func testAddressMaskCoversPowerOfTwoPages() throws {
        let backend = try attach(sid, domain: 1)
        for i in 0..<4 as Range<UInt64> { _ = try guest.writer.map(domain: 1, iova: 0x4000 + i * 0x1000, gpa: 0x10000 + i * 0x1000) }
        _ = try guest.writer.map(domain: 1, iova: 0x8000, gpa: 0x30000)
        // AM=2 at 0x4000: four pages, not the fifth.
        deliver([.iotlb(.pages(domainID: 1, address: 0x4000, addressMask: 2, invalidationHint: false), drainReads: false, drainWrites: false)])
        XCTAssertEqual(backend.calls, (0..<4).map { map(0x4000 + $0 * 0x1000, 0x10000 + $0 * 0x1000) })
    }

    func testDomainSelectiveSyncsTheWholeSpaceOfThatDomainOnly() throws {
        let a = try attach(sid, domain: 1)
        let b = try attach(sid2, domain: 2)
        _ = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        _ = try guest.writer.map(domain: 1, iova: 0x40_0000_0000, gpa: 0x11000)
        _ = try guest.writer.map(domain: 2, iova: 0x1000, gpa: 0x12000)
        deliver([.iotlb(.domain(1), drainReads: false, drainWrites: false)])
        XCTAssertEqual(a.calls, [map(0x1000, 0x10000), map(0x40_0000_0000, 0x11000)])
        XCTAssertEqual(b.calls, [])
    }

    func testGlobalIOTLBSyncsEverySpace() throws {
        let a = try attach(sid, domain: 1)
        let b = try attach(sid2, domain: 2)
        _ = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        _ = try guest.writer.map(domain: 2, iova: 0x1000, gpa: 0x12000)
        deliver([.iotlb(.global, drainReads: false, drainWrites: false)])
        XCTAssertEqual(a.calls, [map(0x1000, 0x10000)])
        XCTAssertEqual(b.calls, [map(0x1000, 0x12000)])
    }

    func testDevicesSharingADomainAreBothSynced() throws {
        let a = try attach(sid, domain: 1)
        let b = try attach(sid2, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        XCTAssertEqual(a.calls, [map(0x1000, 0x10000)])
        XCTAssertEqual(b.calls, [map(0x1000, 0x10000)])
    }

    func testContextCacheInvalidationMovesADeviceToAnotherDomain() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        try guest.writer.createDomain(2)
        _ = try guest.writer.map(domain: 2, iova: 0x2000, gpa: 0x11000)   // same as before: kept
        _ = try guest.writer.map(domain: 2, iova: 0x3000, gpa: 0x12000)
        backend.clearCalls()
        let table2 = guest.writer.domainTables[2]!.table
        deliver(try guest.writer.writeContext(sid, ContextEntry.encode(secondLevelTable: table2, domainID: 2, levels: 4), previousDomain: 1))
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000), map(0x3000, 0x12000)])
        XCTAssertEqual(space(sid).context.domainID, 2)
        // Now IOTLB invalidations of domain 1 no longer reach this device.
        backend.clearCalls()
        deliver(try guest.writer.map(domain: 1, iova: 0x9000, gpa: 0x19000))
        XCTAssertEqual(backend.calls, [])
    }

    func testContextEntryRemovedUnmapsEverythingInOneCall() throws {
        let backend = try attach(sid, domain: 1)
        for i in 0..<16 as Range<UInt64> { deliver(try guest.writer.map(domain: 1, iova: i * 0x1000, gpa: 0x10000 + i * 0x1000)) }
        backend.clearCalls()
        deliver(try guest.writer.detach(sid))
        XCTAssertEqual(backend.calls, [.unmapAll])
        XCTAssertTrue(space(sid).shadow.isEmpty)
        XCTAssertEqual(space(sid).context, .notPresent)
    }

    func testLargeLeavesAreOneMappingEach() throws {
        try setUpGuest(ramSize: 4 << 30)
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21))
        deliver(try guest.writer.map(domain: 1, iova: 0x8000_0000, gpa: 0x4000_0000, sizeShift: 30))
        XCTAssertEqual(backend.calls, [map(0x20_0000, 0x40_0000, 1 << 21), map(0x8000_0000, 0x4000_0000, 1 << 30)])
        // A 4 KiB invalidation inside a 2 MiB leaf that did not change: nothing.
        backend.clearCalls()
        deliver([guest.writer.pageInvalidation(domain: 1, iova: 0x30_0000, sizeShift: 12)])
        XCTAssertEqual(backend.calls, [])
        assertShadowMatchesKernel(sid, backend)
    }

    func testA2MLeafSplitIntoPagesIsUnmappedWholeNeverBisected() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21))
        // The guest replaces the 2 MiB leaf with a page table holding two pages,
        // and (sloppily) invalidates just one 4 KiB page in the middle.
        _ = try guest.writer.unmap(domain: 1, iova: 0x20_0000, sizeShift: 21)
        _ = try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000)
        _ = try guest.writer.map(domain: 1, iova: 0x3f_f000, gpa: 0x5f_f000)
        backend.clearCalls()
        deliver([guest.writer.pageInvalidation(domain: 1, iova: 0x30_0000, sizeShift: 12)])
        // The whole 2 MiB is unmapped exactly, then the range it covered is walked.
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x20_0000, size: 1 << 21), map(0x20_0000, 0x40_0000), map(0x3f_f000, 0x5f_f000)])
        assertShadowMatchesKernel(sid, backend)
    }

    func testPagesMergedIntoA2MLeafAreUnmappedOneByOne() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000) + guest.writer.map(domain: 1, iova: 0x20_1000, gpa: 0x40_1000))
        backend.clearCalls()
        deliver(try guest.writer.map(domain: 1, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21))
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x20_0000, size: 0x1000), .unmap(iova: 0x20_1000, size: 0x1000),
                                       map(0x20_0000, 0x40_0000, 1 << 21)])
    }

    func testReplayOfUnchangedTablesIssuesNoCalls() throws {
        let backend = try attach(sid, domain: 1)
        var batch: [InvalidationDescriptor] = []
        for i in 0..<300 as Range<UInt64> { batch += try guest.writer.map(domain: 1, iova: 0x100_0000 + i * 0x1000, gpa: 0x10_0000 + i * 0x1000) }
        batch += try guest.writer.map(domain: 1, iova: 0x4000_0000, gpa: 0x20_0000, sizeShift: 21)
        deliver(batch)
        XCTAssertEqual(backend.calls.count, 301)
        backend.clearCalls()
        let report = try bridge.replay(sid)
        XCTAssertEqual(report.ioctls, 0)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(try bridge.replay().ioctls, 0)
        XCTAssertEqual(space(sid).shadow.count, 301)
    }

    func testReplayRepairsWhatChangedWithoutInvalidation() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        _ = try guest.writer.map(domain: 1, iova: 0x5000, gpa: 0x15000)   // never invalidated
        _ = try guest.writer.unmap(domain: 1, iova: 0x1000)                // never invalidated
        backend.clearCalls()
        XCTAssertEqual(try bridge.replay(sid).ioctls, 2)
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000), map(0x5000, 0x15000)])
    }

    func testBatchIsMergedIntoOneSyncPerSpace() throws {
        let backend = try attach(sid, domain: 1)
        let before = space(sid).syncs
        var batch: [InvalidationDescriptor] = []
        for i in 0..<64 as Range<UInt64> { batch += try guest.writer.map(domain: 1, iova: i * 0x1000, gpa: 0x10_0000 + i * 0x1000) }
        let result = deliver(batch)
        XCTAssertEqual(space(sid).syncs - before, 1)
        XCTAssertEqual(result.report.maps, 64)
        XCTAssertEqual(backend.calls.count, 64)
        // The same with a wait after each: still one sync for the batch (the
        // waits complete when the reply arrives, after all of it).
        var waited: [InvalidationDescriptor] = []
        for i in 0..<8 as Range<UInt64> { waited += try guest.writer.unmap(domain: 1, iova: i * 0x1000) + [GuestTableWriter<GuestRAM>.wait] }
        let r = bridge.process(waited)
        XCTAssertEqual(r.waits, 8)
        XCTAssertEqual(r.report.unmaps, 8)
        XCTAssertEqual(space(sid).syncs - before, 2)
    }

    func testAnInvalidDescriptorStopsTheBatchWhereHardwareWould() throws {
        let backend = try attach(sid, domain: 1)
        let good = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)[0].encoded
        let later = try guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000)[0].encoded
        let result = bridge.process([good, (0x32 | 1 << 8, 0), later])
        XCTAssertEqual(result.rejected?.index, 1)
        XCTAssertTrue(result.rejected!.reason.contains("reserved"))
        // What came before it was executed; what came after was not.
        XCTAssertEqual(backend.calls, [map(0x1000, 0x10000)])
    }

    func testDeviceTLBAndInterruptCacheInvalidationsAreAcceptedWithoutAction() throws {
        let backend = try attach(sid, domain: 1)
        _ = try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        deliver([.deviceTLB(sourceID: sid, address: 0x1000, sizeBit: false), .interruptEntryCache(global: true, index: 0, indexMask: 0)])
        XCTAssertEqual(backend.calls, [])
    }
}
