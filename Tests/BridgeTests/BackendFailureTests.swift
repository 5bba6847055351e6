import Bridge
import Glibc
import VFIO
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// The shadow records exactly what the kernel accepted, and a replay repairs
/// what failed once the cause is gone.
final class BackendFailureTests: SyncTestCase {
    func testFailedMapIsReportedNotRecordedAndRepairedByReplay() throws {
        let backend = try attach(sid, domain: 1)
        backend.inject = { call in
            if case let .map(iova, _, _, _) = call, iova == 0x2000 { return ENOMEM }
            return nil
        }
        let result = bridge.process(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
                                    + guest.writer.map(domain: 1, iova: 0x2000, gpa: 0x11000))
        XCTAssertEqual(result.report.maps, 1)
        XCTAssertEqual(result.report.failures.count, 1)
        XCTAssertEqual(result.report.failures[0].operation, .map)
        XCTAssertEqual(result.report.failures[0].iova, 0x2000)
        XCTAssertEqual(result.report.failures[0].error.errno, ENOMEM)
        XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000])
        assertShadowMatchesKernel(sid, backend)

        backend.inject = nil
        backend.clearCalls()
        let replay = try bridge.replay(sid)
        XCTAssertEqual(replay.failures, [])
        XCTAssertEqual(backend.calls, [map(0x2000, 0x11000)])
        assertShadowMatchesKernel(sid, backend)
    }

    func testFailedUnmapKeepsTheEntryAndBlocksOverlappingMaps() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        backend.inject = { if case .unmap = $0 { return EFAULT } else { return nil } }
        backend.clearCalls()
        // Remap: the unmap fails, so the new map must not be attempted.
        let r = bridge.process(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x20000))
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000)])
        XCTAssertEqual(r.report.failures.map(\.operation), [.unmap, .map])
        XCTAssertEqual(r.report.failures[1].error.errno, EEXIST)
        XCTAssertEqual(space(sid).shadow.entries.first?.hostAddress, host(0x10000), "the shadow still names what the kernel holds")
        assertShadowMatchesKernel(sid, backend)

        backend.inject = nil
        backend.clearCalls()
        XCTAssertEqual(try bridge.replay(sid).failures, [])
        XCTAssertEqual(backend.calls, [.unmap(iova: 0x1000, size: 0x1000), map(0x1000, 0x20000)])
        assertShadowMatchesKernel(sid, backend)
    }

    /// Issue 6, kernel faults: for each errno the kernel gives MAP_DMA in
    /// practice (EEXIST overlap, ENOMEM memlock, ENOSPC dma_entry_limit,
    /// EFAULT bad vaddr), in the middle of a batch: the shadow holds exactly
    /// what the kernel accepted, the report (what the ack carries) names the
    /// call, the page and the errno, and a replay after the cause is gone
    /// maps the rest and nothing else. A page-specific refusal (EEXIST,
    /// EFAULT) leaves the next page mapped; after a resource refusal (ENOMEM,
    /// ENOSPC) the next map is not attempted, and one more failure record
    /// says so.
    func testEveryKernelErrnoIsReportedAndRepairedByReplay() throws {
        for errno in [EEXIST, ENOMEM, ENOSPC, EFAULT] {
            let resource = errno == ENOMEM || errno == ENOSPC
            try setUpGuest()
            let backend = try attach(sid, domain: 1)
            backend.inject = { call in
                if case let .map(iova, _, _, _) = call, iova == 0x2000 { return errno }
                return nil
            }
            var batch: [InvalidationDescriptor] = []
            for i in 1...3 as ClosedRange<UInt64> { batch += try guest.writer.map(domain: 1, iova: i * 0x1000, gpa: 0x10000 + i * 0x1000) }
            backend.clearCalls()
            let r = bridge.process(batch + [GuestTableWriter<GuestRAM>.wait])
            XCTAssertEqual(r.report.maps, resource ? 1 : 2, "errno \(errno)")
            XCTAssertEqual(backend.calls.count, resource ? 2 : 3, "errno \(errno): kernel calls")
            XCTAssertEqual(r.report.failures.count, resource ? 2 : 1, "errno \(errno)")
            let failure = try XCTUnwrap(r.report.failures.first)
            XCTAssertEqual(failure.operation, .map)
            XCTAssertEqual(failure.iova, 0x2000)
            XCTAssertEqual(failure.size, 0x1000)
            XCTAssertEqual(failure.error.errno, errno)
            XCTAssertTrue(failure.error.description.contains(String(cString: strerror(errno))), failure.error.description)
            XCTAssertTrue(failure.error.description.contains("MAP_DMA"), failure.error.description)
            if resource {
                let skipped = r.report.failures[1]
                XCTAssertEqual(skipped.iova, 0x3000)
                XCTAssertEqual(skipped.error.errno, errno)
                XCTAssertTrue(skipped.error.description.contains("1 more map(s) from iova 0x3000 not attempted"), skipped.error.description)
            }
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova), resource ? [0x1000] : [0x1000, 0x3000],
                           "errno \(errno): the shadow holds what the kernel accepted")
            XCTAssertEqual(space(sid).faults.counts[.backendError], resource ? 2 : 1)
            assertShadowMatchesKernel(sid, backend)

            // Still failing: a replay retries the refused page and nothing
            // else mapped (after a resource refusal, the rest waits again).
            backend.clearCalls()
            XCTAssertEqual(try bridge.replay(sid).failures.count, resource ? 2 : 1)
            XCTAssertEqual(backend.calls, [map(0x2000, 0x12000)])
            // The cause is gone: the replay repairs it.
            backend.inject = nil
            backend.clearCalls()
            let repaired = try bridge.replay(sid)
            XCTAssertEqual(repaired.failures, [])
            XCTAssertEqual(backend.calls, resource ? [map(0x2000, 0x12000), map(0x3000, 0x13000)] : [map(0x2000, 0x12000)], "errno \(errno)")
            XCTAssertEqual(space(sid).shadow.entries.map(\.iova), [0x1000, 0x2000, 0x3000])
            assertShadowMatchesKernel(sid, backend)
        }
    }

    /// A guest mapping far past the kernel's dma_entry_limit costs one
    /// refused ioctl per sync, not one per page; an unmap that frees an
    /// entry lets the next map be tried.
    func testAnENOSPCStormCostsOneCallPerSync() throws {
        let backend = try attach(sid, domain: 1)
        backend.inject = { if case .map = $0 { return ENOSPC } else { return nil } }
        var batch: [InvalidationDescriptor] = []
        for i in 0..<1000 as Range<UInt64> { batch += try guest.writer.map(domain: 1, iova: 0x10_0000 + i * 0x1000, gpa: 0x10_0000 + i * 0x1000) }
        backend.clearCalls()
        let r = bridge.process(batch + [GuestTableWriter<GuestRAM>.wait])
        XCTAssertEqual(backend.calls.count, 1)
        XCTAssertEqual(r.report.failures.count, 2)
        XCTAssertTrue(r.report.failures[1].error.description.contains("999 more map(s)"), r.report.failures[1].error.description)
        XCTAssertTrue(space(sid).shadow.isEmpty)
        XCTAssertEqual(space(sid).faults.counts[.backendError], 2)
        backend.inject = nil
        backend.clearCalls()
        XCTAssertEqual(try bridge.replay(sid).maps, 1000)
        XCTAssertEqual(backend.calls.count, 1000)
        assertShadowMatchesKernel(sid, backend)
    }

    func testFailedUnmapAllKeepsTheShadow() throws {
        let backend = try attach(sid, domain: 1)
        deliver(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
        backend.inject = { $0 == .unmapAll ? EIO : nil }
        let r = bridge.process(try guest.writer.detach(sid))
        XCTAssertEqual(r.report.failures.map(\.operation), [.unmapAll])
        XCTAssertEqual(space(sid).shadow.count, 1)
        backend.inject = nil
        XCTAssertEqual(try bridge.replay(sid).unmaps, 1)
        XCTAssertTrue(space(sid).shadow.isEmpty)
        assertShadowMatchesKernel(sid, backend)
    }
}
