import Bridge
import Glibc
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// A space fed by a vfio-user client: its DMA regions reach the backend
/// exactly, edges cut by an unmap are re-mapped outside the range, and no
/// table walk, invalidation or notifier event touches it.
final class ClientDMATests: SyncTestCase {
    private let base: UInt64 = 0x7000_0000_0000

    private func region(_ iova: UInt64, _ size: UInt64, _ offset: UInt64, _ perm: DMAPermission = .readWrite) -> ShadowEntry {
        ShadowEntry(iova: iova, size: size, hostAddress: base + offset, permission: perm)
    }

    private func clientSpace(quota: Int? = nil) throws -> RecordingBackend {
        let backend = RecordingBackend()
        try bridge.attach(sid, backend: backend, mappingQuota: quota, clientFed: true)
        return backend
    }

    func testAMapIsMadeOnceAndAnOverlapIsRefusedWithEEXIST() throws {
        let backend = try clientSpace()
        XCTAssertEqual(try bridge.clientMap(sid, region(0x10000, 0x4000, 0)).get().maps, 1)
        XCTAssertEqual(backend.calls, [.map(iova: 0x10000, size: 0x4000, hostAddress: base, permission: .readWrite)])
        guard case let .failure(error) = bridge.clientMap(sid, region(0x13000, 0x1000, 0x9000)) else { return XCTFail("overlap accepted") }
        XCTAssertEqual(error.errno, EEXIST)
        XCTAssertTrue(error.message.contains("[0x10000, 0x14000)"), error.message)
        XCTAssertEqual(backend.calls.count, 1)
    }

    func testAnUnmapCuttingBothEdgesKeepsOnlyWhatLiesOutside() throws {
        let backend = try clientSpace()
        _ = try bridge.clientMap(sid, region(0x10000, 0x4000, 0)).get()
        _ = try bridge.clientMap(sid, region(0x20000, 0x4000, 0x10000)).get()
        backend.clearCalls()
        // [0x12000, 0x22000) cuts the first region's top and the second's bottom.
        let done = try bridge.clientUnmap(sid, iova: 0x12000, end: 0x22000).get()
        XCTAssertEqual(done.straddled, 2)
        XCTAssertEqual(done.removed, 0)
        XCTAssertEqual(done.bytes, 0x4000)
        XCTAssertEqual(backend.mappings.keys.sorted(), [0x10000, 0x22000])
        XCTAssertEqual(backend.mappings[0x10000], .init(size: 0x2000, hostAddress: base, permission: .readWrite))
        XCTAssertEqual(backend.mappings[0x22000], .init(size: 0x2000, hostAddress: base + 0x12000, permission: .readWrite))
        // Each cut region went whole before its outside part came back.
        XCTAssertEqual(backend.calls.filter { if case .unmap = $0 { true } else { false } }.count, 2)
    }

    func testAnUnmapToTheTopOfTheSpaceAndOneOfNothing() throws {
        let backend = try clientSpace()
        _ = try bridge.clientMap(sid, region(0xffff_ffff_f000_0000, 0x1000, 0)).get()
        XCTAssertEqual(try bridge.clientUnmap(sid, iova: 0x8000_0000_0000_0000, end: 0).get().removed, 1)
        XCTAssertTrue(backend.mappings.isEmpty)
        backend.clearCalls()
        let nothing = try bridge.clientUnmap(sid, iova: 0x1000, end: 0x2000).get()
        XCTAssertEqual(nothing.removed + nothing.straddled, 0)
        XCTAssertEqual(backend.calls, [])
    }

    func testTheQuotaAndTheKernelRefuseAndTheRegionIsForgotten() throws {
        let backend = try clientSpace(quota: 1)
        _ = try bridge.clientMap(sid, region(0x10000, 0x1000, 0)).get()
        guard case let .failure(full) = bridge.clientMap(sid, region(0x20000, 0x1000, 0)) else { return XCTFail("quota ignored") }
        XCTAssertEqual(full.errno, ENOSPC)
        _ = try bridge.clientUnmap(sid, iova: 0x10000, end: 0x11000).get()
        backend.inject = { if case .map = $0 { ENOMEM } else { nil } }
        guard case let .failure(refused) = bridge.clientMap(sid, region(0x20000, 0x1000, 0)) else { return XCTFail("kernel refusal ignored") }
        XCTAssertEqual(refused.errno, ENOMEM)
        backend.inject = nil
        XCTAssertEqual(try bridge.clientMap(sid, region(0x20000, 0x1000, 0)).get().maps, 1, "forgotten, so no overlap")
    }

    func testTablesInvalidationsAndReplaysLeaveAClientSpaceAlone() throws {
        let backend = try clientSpace()
        _ = try bridge.clientMap(sid, region(0x10000, 0x1000, 0)).get()
        backend.clearCalls()
        // The guest's tables say nothing about this device; its client does.
        let result = bridge.process([.iotlb(.global, drainReads: false, drainWrites: false), GuestTableWriter<GuestRAM>.wait])
        XCTAssertNil(result.rejected)
        _ = bridge.setTranslationEnabled(true)
        XCTAssertEqual(try bridge.replay(sid).ioctls, 0)
        XCTAssertEqual(backend.calls, [])
        XCTAssertEqual(bridge.clientDisconnected(sid).unmaps, 1)
        XCTAssertTrue(backend.mappings.isEmpty)
    }
}
