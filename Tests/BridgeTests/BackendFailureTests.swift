import Bridge
import Glibc
import VFIO
import VTd
import VTdBridgeTestSupport
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

    func testEveryKernelErrnoIsCarriedToTheReport() throws {
        for errno in [EEXIST, ENOMEM, ENOSPC, EFAULT] {
            try setUpGuest()
            let backend = try attach(sid, domain: 1)
            backend.inject = { if case .map = $0 { return errno } else { return nil } }
            let r = bridge.process(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000))
            XCTAssertEqual(r.report.failures.first?.error.errno, errno)
            XCTAssertTrue(space(sid).shadow.isEmpty)
            XCTAssertEqual(space(sid).faults.counts[.backendError], 1)
        }
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
