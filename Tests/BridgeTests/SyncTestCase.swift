import Bridge
import Logging
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// Shared set-up: a simulated guest, a bridge over its RAM, and a recording
/// backend per attached device.
class SyncTestCase: XCTestCase {
    var guest: GuestFixture!
    var bridge: GuestIOMMU!
    let sid = SourceID("00:03.0")!
    let sid2 = SourceID("00:04.0")!

    func setUpGuest(ramSize: UInt64 = 64 << 20, caps: IOMMUCapabilities = .make(),
                    extraRegions: [GuestRAMRegionSpec] = []) throws {
        guest = try GuestFixture(ramSize: ramSize, extraRegions: extraRegions, caps: caps)
        bridge = try guest.makeBridge()
    }

    override func setUpWithError() throws {
        try setUpGuest()
    }

    /// Attaches `sid` to the bridge, then points it at `domain` in the guest
    /// tables and delivers the driver's invalidations.
    @discardableResult
    func attach(_ sid: SourceID, domain: UInt16, backend: RecordingBackend = RecordingBackend()) throws -> RecordingBackend {
        try bridge.attach(sid, backend: backend)
        deliver(try guest.writer.attach(sid, domain: domain))
        return backend
    }

    /// Sends descriptors as one batch ending in a wait; fails the test on any
    /// refusal or kernel failure.
    @discardableResult
    func deliver(_ descriptors: [InvalidationDescriptor], file: StaticString = #filePath, line: UInt = #line) -> BatchResult {
        let result = bridge.process(descriptors + [GuestTableWriter<GuestRAM>.wait])
        XCTAssertNil(result.rejected?.reason, file: file, line: line)
        XCTAssertEqual(result.report.failures, [], file: file, line: line)
        XCTAssertEqual(result.waits, 1, file: file, line: line)
        return result
    }

    func host(_ gpa: UInt64, _ size: UInt64 = 4096) -> UInt64 {
        guest.memory.hostAddress(gpa: gpa, size: size)!
    }

    func map(_ iova: UInt64, _ gpa: UInt64, _ size: UInt64 = 4096, _ perm: DMAPermission = .readWrite) -> RecordingBackend.Call {
        .map(iova: iova, size: size, hostAddress: host(gpa, size), permission: perm)
    }

    func space(_ sid: SourceID) -> AddressSpace { bridge.spaces[sid]! }

    /// What a new bridge with an empty shadow maps for `sid` from the same
    /// tables: the reference a sync or a replay must arrive at.
    func freshWalk(_ sid: SourceID) throws -> [ShadowEntry] {
        let probe = try GuestIOMMU(caps: guest.caps, logger: GuestFixture.quietLogger)
        _ = probe.setMemory(guest.memory)
        _ = probe.setRootTable(guest.writer.rootTable)
        _ = probe.setTranslationEnabled(true)
        try probe.attach(sid, backend: RecordingBackend())
        return probe.spaces[sid]!.shadow.entries
    }

    /// The shadow must equal what the kernel double holds.
    func assertShadowMatchesKernel(_ sid: SourceID, _ backend: RecordingBackend, file: StaticString = #filePath, line: UInt = #line) {
        let shadow = Dictionary(uniqueKeysWithValues: space(sid).shadow.entries.map {
            ($0.iova, RecordingBackend.Mapping(size: $0.size, hostAddress: $0.hostAddress, permission: $0.permission))
        })
        XCTAssertEqual(shadow, backend.mappings, file: file, line: line)
    }
}
