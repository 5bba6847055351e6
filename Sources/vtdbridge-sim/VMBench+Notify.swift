import Bridge
import Foundation
import Glibc
import Histogram
import VTd
import Wire

/// Part (c) of `vm-bench`: the same daemon, now with a VMM in notifier mode
/// (PROTOCOL.md §1.6, NOTIFY), the mode of a VMM that walks the guest's
/// tables itself, as QEMU's IOMMU notifiers do. Issue 14's latency goals
/// hold for NOTIFY as for INVALIDATE.
extension VMBench {
    struct NotifyRun {
        /// NOTIFY → ack, maps and unmaps alike.
        var latency = LatencyFigure.histogram()
        var floor = FloorSamples()
        /// Requests per second, the floor's samples not counted.
        var rate = 0.0
    }

    /// Untimed rounds first: the new session's memory table is mapped again
    /// by the daemon, and its first requests pay for that.
    static let notifyWarmup = 100

    /// Connects in notifier mode and times `notifyRounds` rounds of one 4K
    /// MAP entry and then its UNMAP entry, each request followed by one
    /// floor sample (the map's a raw MAP_DMA, the unmap's an UNMAP_DMA).
    func notifierSession(eventPath: String, guest: SimulatedGuest, hosts: [UInt64], floor: FloorProbe, ackSize: Int) throws -> NotifyRun {
        let link = try VMMLink(eventPath: eventPath, guest: guest, transcript: Transcript(quiet: true))
        defer { link.events.close() }
        try link.handshake(flags: .notifierMode)
        let sid = SourceID("00:03.0")!.rawValue
        func entry(_ slot: Int, map: Bool) -> NotifierEntry {
            NotifierEntry(iova: Self.iovaBase + UInt64(slot) * 4096, translatedAddress: Self.gpaBase + UInt64(slot) * 4096,
                          addressMask: 0xfff, sourceID: sid, permission: map ? .readWrite : [])
        }
        // One entry's NOTIFY is as long as one page's INVALIDATE (8 + 32
        // bytes of payload either way), so the same echo child serves: say
        // so if the protocol ever makes them differ.
        let echoRequest = EventCodec.encodeRequest(.notify([entry(0, map: true)]), tag: 1)
        guard echoRequest.count == floor.requestSize else {
            throw SimError("a one-entry NOTIFY is \(echoRequest.count) bytes, the floor's echo takes \(floor.requestSize)")
        }
        precondition(ackSize == floor.replySize)

        var run = NotifyRun()
        var floorTime = Duration.zero
        var start = ContinuousClock.now
        for round in 0..<(Self.notifyWarmup + notifyRounds) {
            let timed = round >= Self.notifyWarmup
            if round == Self.notifyWarmup {
                start = .now
                floorTime = .zero
            }
            let slot = round % pages
            for map in [true, false] {
                let t = ContinuousClock.now
                let r = try link.notify([entry(slot, map: map)])
                let acked = ContinuousClock.now
                let sample = try floor.sample(echoRequest, iova: Self.iovaBase + UInt64(slot) * 4096, hostAddress: map ? hosts[slot] : nil)
                floorTime += acked.duration(to: .now)
                guard r.maps == (map ? 1 : 0), r.unmaps == (map ? 0 : 1) else {
                    throw SimError("a one-page NOTIFY \(map ? "map" : "unmap") made \(r.maps) maps and \(r.unmaps) unmaps")
                }
                if timed {
                    run.latency.record(UInt64(max(0, t.duration(to: acked).nanosecondCount)))
                    run.floor.record(roundTrip: sample.roundTrip, ioctl: sample.ioctl)
                }
            }
        }
        run.rate = Double(2 * notifyRounds) / seconds(start.duration(to: .now) - floorTime)
        return run
    }
}
