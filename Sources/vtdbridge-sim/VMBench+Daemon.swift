import Bridge
import CPosix
import Foundation
import Glibc
import Histogram
import ProcessMemory
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

/// Part (a) of `vm-bench`: invalidations through a real vtdbridged with a
/// real edu attached, in batches of 1 and 64, each batch acked.
extension VMBench {
    struct DaemonRun {
        var rates: [Int: [Double]] = [1: [], 64: []]
        var stageRows: [String] = []
        var latency = LatencyFigure.histogram()
        /// One floor sample per timed batch-1 request (default config only).
        var floor: FloorSamples?
        /// "56 B → 48 B": the frame sizes the floor's echo mirrors.
        var floorSizes = ""
        /// Over the batch-1 requests that had a floor sample beside them:
        /// the daemon (all its threads), this thread while it waited for
        /// the daemon, the echo child, and this thread during the floor.
        var daemonSwitches = ContextSwitches()
        var clientSwitches = ContextSwitches()
        var echoSwitches = ContextSwitches()
        var clientFloorSwitches = ContextSwitches()
        var notify: NotifyRun?
        /// The daemon's memory: after READY with nothing mapped, while every
        /// page was mapped, and after the runs (nothing mapped again).
        var idle: ProcessMemory?
        var held: ProcessMemory?
        var afterRuns: ProcessMemory?
    }

    /// Runs the batch-1 and batch-64 loops through a daemon started here.
    /// With `floorDevice`, each batch-1 request is followed by one floor
    /// sample (FloorProbe on that device), the daemon's memory is read, and
    /// a notifier-mode session follows (VMBench+Notify).
    func throughDaemon(guest: SimulatedGuest, hosts: [UInt64], edu: String, floorDevice: String?, tuned: Bool) throws -> DaemonRun {
        let supervisor = DaemonSupervisor(binary: daemon, name: "bench", directory: "/run/vtdbench")
        // The daemon reads config key event-busy-poll-us from its environment.
        if tuned { setenv("VTDBRIDGE_EVENT_BUSY_POLL_US", "1000", 1) }
        try supervisor.start(extra: ["--log-level", "warning"])
        unsetenv("VTDBRIDGE_EVENT_BUSY_POLL_US")
        defer { supervisor.stop() }
        if tuned {
            _ = cposix_set_affinity(0, 0)
            _ = cposix_set_affinity(supervisor.pid, 1)
        }
        defer { if tuned { _ = cposix_set_affinity(0, -1) } }
        let control = try ControlClient(path: supervisor.controlSocket)
        _ = try control.require("attach", ["host": .string(edu), "guest": "00:03.0"])
        let link = try VMMLink(eventPath: supervisor.eventSocket, guest: guest, transcript: Transcript(quiet: true))
        if tuned { link.events.spinBeforeBlocking = .milliseconds(2) }
        try link.handshake()
        let sid = SourceID("00:03.0")!
        try link.deliver(try guest.attach(sid, domain: 1))
        var run = DaemonRun()
        if floorDevice != nil { run.idle = try Self.settledFootprint(supervisor.pid) }
        // The guest's side of each page is what a guest kernel does: one PTE
        // store and one page-selective descriptor. Where each PTE lives and
        // the descriptor words are worked out before the clock starts (the
        // table pages are made by a map that is cleared again before the
        // daemon is told anything), so the loop times the daemon, not the
        // simulator's own bookkeeping, which a first version of this loop
        // spent ~20 µs per page on under TCG.
        var ptes: [UnsafeMutablePointer<UInt64>] = []
        var leaves: [UInt64] = []
        var pageWords: [InvalidationWords] = []
        for i in 0..<pages {
            let iova = Self.iovaBase + UInt64(i) * 4096
            let gpa = Self.gpaBase + UInt64(i) * 4096
            _ = try guest.writer.map(domain: 1, iova: iova, gpa: gpa)
            let slot = guest.writer.existingSlot(domain: 1, iova: iova, level: 1)!
            let page = guest.memory.mutableTablePage(at: slot & ~0xfff)!
            ptes.append(page + Int((slot & 0xfff) >> 3))
            leaves.append(SecondLevelEntry.leaf(gpa, level: 1, permission: .readWrite).rawValue.littleEndian)
            ptes[i].pointee = 0
            let (low, high) = guest.writer.pageInvalidation(domain: 1, iova: iova, sizeShift: 12).encoded
            pageWords.append(InvalidationWords(low: low, high: high))
        }
        let (waitLow, waitHigh) = GuestTableWriter<GuestRAM>.wait.encoded
        let waitWords = InvalidationWords(low: waitLow, high: waitHigh)

        // The floor's echo carries what one unbatched request and its ack
        // carry: a page's INVALIDATE frame (its descriptor and the wait) and
        // an OK batch result.
        let echoRequest = EventCodec.encodeRequest(.invalidate([pageWords[0], waitWords]), tag: 1)
        let ackSize = EventCodec.encodeReply(requestType: EventType.invalidate.rawValue, tag: 1,
                                             EventReply(body: .batch(BatchResultBody(waits: 1, maps: 1)))).count
        let floor = try floorDevice.map {
            try FloorProbe(directory: directory, rawDevice: $0, requestSize: echoRequest.count, replySize: ackSize)
        }
        defer { floor?.stop() }
        if floor != nil {
            run.floor = FloorSamples()
            run.floorSizes = "\(echoRequest.count) B → \(ackSize) B"
        }

        var words: [InvalidationWords] = []
        words.reserveCapacity(65)
        for batch in [1, 64] {
            for rep in 0..<repetitions {
                let before = try control.require("status")["stages"]
                let probe = batch == 1 ? floor : nil
                let daemonBefore = ContextSwitches.ofProcess(supervisor.pid)
                let echoBefore = probe.map { ContextSwitches.ofProcess($0.echoPID) }
                var mark = ContextSwitches.ofThisThread()
                // Time spent on floor samples, taken out of the rate.
                var floorTime = Duration.zero
                let start = ContinuousClock.now
                for phase in 0..<2 {
                    for i in 0..<pages {
                        ptes[i].pointee = phase == 0 ? leaves[i] : 0
                        words.append(pageWords[i])
                        if words.count == batch || i == pages - 1 {
                            words.append(waitWords)
                            let t = ContinuousClock.now
                            let r = try link.deliver(words: words)
                            let acked = ContinuousClock.now
                            if batch == 1 { run.latency.record(UInt64(t.duration(to: acked).nanosecondCount)) }
                            if let probe {
                                // Everything from here to the next request is
                                // the floor's: the counters are read inside it.
                                let waited = ContextSwitches.ofThisThread()
                                run.clientSwitches = run.clientSwitches + (waited - mark)
                                let iova = Self.iovaBase + UInt64(i) * 4096
                                let sample = try probe.sample(echoRequest, iova: iova, hostAddress: phase == 0 ? hosts[i] : nil)
                                run.floor!.record(roundTrip: sample.roundTrip, ioctl: sample.ioctl)
                                mark = ContextSwitches.ofThisThread()
                                run.clientFloorSwitches = run.clientFloorSwitches + (mark - waited)
                                floorTime += acked.duration(to: .now)
                            }
                            guard Int(r.maps + r.unmaps) == words.count - 1 else {
                                throw SimError("batch of \(words.count - 1) made \(r.maps) maps and \(r.unmaps) unmaps")
                            }
                            words.removeAll(keepingCapacity: true)
                        }
                    }
                }
                run.rates[batch]!.append(Double(2 * pages) / seconds(start.duration(to: .now) - floorTime))
                if let probe, let echoBefore {
                    run.daemonSwitches = run.daemonSwitches + (ContextSwitches.ofProcess(supervisor.pid) - daemonBefore)
                    run.echoSwitches = run.echoSwitches + (ContextSwitches.ofProcess(probe.echoPID) - echoBefore)
                }
                if rep == 0, let before {
                    let after = try control.require("status")["stages"]!
                    func delta(_ key: String) -> Double {
                        Double((after[key]?.int64Value ?? 0) - (before[key]?.int64Value ?? 0))
                    }
                    let requests = delta("requests")
                    let perOp = Double(2 * pages)
                    run.stageRows.append("daemon stages, batch \(batch), per invalidation\(tuned ? ", tuned" : "")|1|receive \(fmt(delta("receive-ns") / perOp / 1000)) µs, walk \(fmt(delta("walk-ns") / perOp / 1000)) µs, ioctl \(fmt(delta("ioctl-ns") / perOp / 1000)) µs, ack \(fmt(delta("ack-ns") / perOp / 1000)) µs|over \(Int(requests)) requests; the rest of the round trip is the socket and the simulator|")
                }
            }
        }
        if floor != nil {
            // Every page mapped at once (untimed, 64 per batch), to show what
            // holding them costs the daemon; then all unmapped again.
            for phase in 0..<2 {
                for i in 0..<pages {
                    ptes[i].pointee = phase == 0 ? leaves[i] : 0
                    words.append(pageWords[i])
                    if words.count == 64 || i == pages - 1 {
                        words.append(waitWords)
                        try link.deliver(words: words)
                        words.removeAll(keepingCapacity: true)
                    }
                }
                if phase == 0 { run.held = try ProcessMemory.of(supervisor.pid) }
            }
            run.afterRuns = try Self.settledFootprint(supervisor.pid)
        }
        // Leave the guest's domain as the next run expects to find it.
        _ = try guest.detach(sid)
        if let floor {
            link.events.close()
            run.notify = try notifierSession(eventPath: supervisor.eventSocket, guest: guest, hosts: hosts, floor: floor, ackSize: ackSize)
        }
        return run
    }

    /// The daemon's memory after a second of quiet: what an idle daemon
    /// holds, not a moment of a request's working set.
    static func settledFootprint(_ pid: pid_t) throws -> ProcessMemory {
        usleep(1_000_000)
        return try ProcessMemory.of(pid)
    }
}
