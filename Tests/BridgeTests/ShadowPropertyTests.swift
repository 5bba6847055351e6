import Bridge
import Logging
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// After any sequence of guest table edits, each followed by the invalidation
/// a correct driver issues, the shadow equals a fresh walk of the tables and
/// the kernel holds exactly the shadow.
final class ShadowPropertyTests: SyncTestCase {
    func testRandomEditsKeepTheShadowEqualToAFreshWalk() throws {
        for seed in 1...12 as ClosedRange<UInt64> {
            try runSequence(seed: seed, steps: 400)
        }
    }

    func runSequence(seed: UInt64, steps: Int) throws {
        try setUpGuest(ramSize: 64 << 20)
        var rng = SplitMix64(state: seed)
        let devices = [sid, sid2]
        var backends: [SourceID: RecordingBackend] = [:]
        for d in devices {
            let b = RecordingBackend()
            backends[d] = b
            try bridge.attach(d, backend: b)
        }
        try guest.writer.createDomain(1)
        try guest.writer.createDomain(2)
        var batch: [InvalidationDescriptor] = try guest.writer.attach(sid, domain: 1) + guest.writer.attach(sid2, domain: 2)
        // IOVAs drawn from a small window so that edits collide: pages, 2 MiB
        // leaves over them, and back again.
        func iova(_ shift: Int) -> UInt64 {
            let slots = UInt64(8 << 20) >> UInt64(shift)
            return UInt64.random(in: 0..<slots, using: &rng) << UInt64(shift)
        }
        func gpa(_ shift: Int) -> UInt64 {
            // Mostly guest RAM below the table area; now and then beyond RAM.
            if UInt64.random(in: 0..<20, using: &rng) == 0 { return (1 << 40) + (UInt64.random(in: 0..<16, using: &rng) << UInt64(shift)) }
            let slots = UInt64(48 << 20) >> UInt64(shift)
            return UInt64.random(in: 0..<slots, using: &rng) << UInt64(shift)
        }
        for step in 0..<steps {
            let did = UInt16.random(in: 1...2, using: &rng)
            switch UInt64.random(in: 0..<100, using: &rng) {
            case 0..<45:
                batch += try guest.writer.map(domain: did, iova: iova(12), gpa: gpa(12),
                                              permission: Bool.random(using: &rng) ? .readWrite : .write)
            case 45..<55:
                batch += try guest.writer.map(domain: did, iova: iova(21), gpa: gpa(21), sizeShift: 21)
            case 55..<85:
                let shift = Bool.random(using: &rng) ? 12 : 21
                batch += try guest.writer.unmap(domain: did, iova: iova(shift), sizeShift: shift)
            case 85..<90:
                // Swap which domain a device uses.
                let d = devices.randomElement(using: &rng)!
                let to = UInt16.random(in: 1...2, using: &rng)
                let table = guest.writer.domainTables[to]!.table
                let old = bridge.spaces[d]!.context.domainID
                batch += try guest.writer.writeContext(d, ContextEntry.encode(secondLevelTable: table, domainID: to, levels: 4), previousDomain: old)
            case 90..<93:
                batch += try guest.writer.detach(devices.randomElement(using: &rng)!)
            case 93..<96:
                let d = devices.randomElement(using: &rng)!
                batch += try guest.writer.attach(d, domain: UInt16.random(in: 1...2, using: &rng))
            default:
                _ = try bridge.replay(Bool.random(using: &rng) ? nil : devices.randomElement(using: &rng)!)
            }
            // End the batch at random points, as a driver's waits fall.
            if Bool.random(using: &rng) || step == steps - 1 {
                let r = bridge.process(batch + [GuestTableWriter<GuestRAM>.wait])
                XCTAssertNil(r.rejected?.reason)
                XCTAssertEqual(r.report.failures, [], "seed \(seed) step \(step)")
                batch.removeAll()
                for d in devices {
                    let expected = try freshWalk(d)
                    XCTAssertEqual(space(d).shadow.entries, expected, "seed \(seed) step \(step) device \(d)")
                    assertShadowMatchesKernel(d, backends[d]!)
                    if space(d).shadow.entries != expected { return }
                }
            }
        }
        // And a replay of what is left issues nothing.
        XCTAssertEqual(try bridge.replay().ioctls, 0, "seed \(seed)")
    }
}
