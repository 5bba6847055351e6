import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

extension KillSoak {
    // MARK: the stream

    /// One guest operation on a random domain: map, unmap or remap a 4 KiB
    /// page, or map/unmap a 2 MiB leaf. The tables are written now; the
    /// returned invalidations tell the daemon.
    func operation() throws -> [InvalidationDescriptor] {
        let d = domains[ops.below(domains.count)].domain
        let roll = ops.below(100)
        func permission() -> DMAPermission {
            switch ops.below(10) { case 0: .read; case 1: .write; default: .readWrite }
        }
        if roll < 6 {
            let iova = Self.largeBase + UInt64(ops.below(Self.largeSlots)) << 21
            stats.large += 1
            if let old = live[d]![iova] { return try unmap(d, iova, old, sizeShift: 21) }
            let gpa = Self.pool2M + UInt64(ops.below(Self.pool2MRegions)) << 21
            return try map(d, iova, gpa: gpa, sizeShift: 21, permission: .readWrite)
        }
        let mapped = live[d]!.keys.filter { $0 < Self.windowBase + UInt64(Self.windowSlots) << 12 }
        if roll < 50 || mapped.isEmpty {
            let iova = Self.windowBase + UInt64(ops.below(Self.windowSlots)) << 12
            let gpa = Self.pool4K + UInt64(ops.below(Self.pool4KPages)) << 12
            if live[d]![iova] != nil { stats.remaps += 1 }
            return try map(d, iova, gpa: gpa, sizeShift: 12, permission: permission())
        }
        let iova = mapped.sorted()[ops.below(mapped.count)]
        if roll < 81 { return try unmap(d, iova, live[d]![iova]!, sizeShift: 12) }
        // Remap: a new page (and maybe permission) for a mapped IOVA, either
        // written over the present PTE, or unmapped and mapped again in the
        // same batch (two invalidations).
        stats.remaps += 1
        let gpa = Self.pool4K + UInt64(ops.below(Self.pool4KPages)) << 12
        var out: [InvalidationDescriptor] = []
        if ops.below(2) == 0 { out += try unmap(d, iova, live[d]![iova]!, sizeShift: 12) }
        return out + (try map(d, iova, gpa: gpa, sizeShift: 12, permission: permission()))
    }

    func map(_ d: UInt16, _ iova: UInt64, gpa: UInt64, sizeShift: Int, permission: DMAPermission) throws -> [InvalidationDescriptor] {
        stats.maps += 1
        gone[d]![iova] = nil
        live[d]![iova] = Leaf(gpa: gpa, size: 1 << UInt64(sizeShift), permission: permission)
        lastBatchTouched.append((d, iova, true))
        return try guest.map(domain: d, iova: iova, gpa: gpa, sizeShift: sizeShift, permission: permission)
    }

    func unmap(_ d: UInt16, _ iova: UInt64, _ old: Leaf, sizeShift: Int) throws -> [InvalidationDescriptor] {
        stats.unmaps += 1
        live[d]![iova] = nil
        gone[d]![iova] = old
        lastBatchTouched.append((d, iova, false))
        return try guest.unmap(domain: d, iova: iova, sizeShift: sizeShift)
    }

    /// A batch of `ops` guest operations, its invalidations in order.
    func makeBatch(ops count: Int) throws -> [InvalidationDescriptor] {
        // The batch before this one stays "recent" too.
        recentMapped = [:]
        recentUnmapped = [:]
        for (d, iova, mapped) in lastBatchTouched {
            if mapped { recentMapped[d, default: []].append(iova) } else { recentUnmapped[d, default: []].append(iova) }
        }
        lastBatchTouched = []
        var batch: [InvalidationDescriptor] = []
        for _ in 0..<count { batch += try operation() }
        opsSent += count
        return batch
    }

    func words(_ batch: [InvalidationDescriptor]) -> [InvalidationWords] {
        (batch + [GuestTableWriter<GuestRAM>.wait]).map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }
    }

    /// Sends a batch and requires a clean ack: every wait reached, nothing
    /// rejected, no fault, no kernel failure.
    func deliverAcked(_ batch: [InvalidationDescriptor]) throws {
        let t = ContinuousClock.now
        let reply = try runner.link.events.request(.invalidate(words(batch)))
        try requireClean(reply, batch.count)
        batchesSent += 1
        // Only batches big enough for the per-op cost to dominate.
        if batch.count >= 16 {
            let us = seconds(t.duration(to: .now)) * 1e6 / Double(batch.count)
            microsPerOp = 0.7 * microsPerOp + 0.3 * us
        }
    }

    func requireClean(_ reply: EventReply, _ count: Int) throws {
        guard case let .batch(body) = reply.body else { throw SimError("INVALIDATE reply without a batch result") }
        guard reply.status == .ok, body.waits == 1, body.rejectedIndex == -1, body.faults == 0, body.failures.isEmpty else {
            throw SimError("a batch of \(count) invalidation(s) was not acked cleanly: \(reply.status.name) \(reply.message); \(body)")
        }
    }
}
