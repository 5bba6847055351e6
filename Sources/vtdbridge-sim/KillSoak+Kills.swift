import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

extension KillSoak {
    // MARK: kills

    /// Streams batches and kills the daemon at `plan`'s point (never
    /// `.duringReady`). Returns where it landed, for the log.
    func killDuringStream(_ plan: SoakKillPlan, number: Int) throws -> String {
        let pid = supervisor.pid
        switch plan.point {
        case let .boundary(n):
            for _ in 0..<n { try deliverAcked(try makeBatch(ops: ops.inRange(1...24))) }
            supervisor.kill()
            return "kill \(number) (pid \(pid)) \(plan.point)"
        case let .inFlight(n, count, fraction):
            for _ in 0..<n { try deliverAcked(try makeBatch(ops: ops.inRange(1...24))) }
            let batch = try makeBatch(ops: count)
            // (Fractions up to 0.25: under TCG the ack of a batch tends to come
            // well before the send-to-ack time of earlier batches says.)
            let delay = min(fraction * Double(count) * microsPerOp, 2e6)
            try runner.link.events.send(.invalidate(words(batch)))
            batchesSent += 1
            usleep(UInt32(delay))
            supervisor.kill()
            // Whatever the daemon sent before it died is still readable; an
            // ack that came must be a clean one.
            let reply = try? runner.link.events.receive()
            if let reply { try requireClean(reply, batch.count) }
            let acked = reply != nil
            if acked { stats.inFlightAcked += 1 } else { stats.inFlightUnacked += 1 }
            return "kill \(number) (pid \(pid)) \(plan.point): \(Int(delay)) µs after sending; "
                + (acked ? "the ack had come" : "no ack (the batch was in flight)")
        case let .timer(ms):
            let timer = SoakKillTimer(supervisor: supervisor, delay: .milliseconds(ms))
            timer.start()
            var acked = 0
            var lastError = ""
            var sending = false
            while acked < 20_000 {
                let batch = try makeBatch(ops: ops.inRange(1...24))
                let reply: EventReply
                do {
                    sending = true
                    try runner.link.events.send(.invalidate(words(batch)))
                    batchesSent += 1
                    sending = false
                    reply = try runner.link.events.receive()
                } catch {
                    lastError = "\(error)"
                    break
                }
                // An ack that came is checked even if the kill follows it.
                do {
                    try requireClean(reply, batch.count)
                } catch {
                    _ = timer.cancel()
                    timer.waitUntilFinished()
                    throw error
                }
                acked += 1
            }
            guard timer.cancel() else {
                throw SimError("kill \(number): the event channel broke before the SIGKILL was sent (\(lastError)); the daemon died on its own:\n\(supervisor.log.split(separator: "\n").suffix(20).joined(separator: "\n"))")
            }
            timer.waitUntilFinished()
            return "kill \(number) (pid \(pid)) \(plan.point): after \(acked) acked batch(es), "
                + (sending ? "while sending the next" : "while waiting for the next batch's ack")
        case .duringReady:
            preconditionFailure("a READY kill interrupts a restart")
        }
    }

    /// Restarts the daemon, attaches, and kills it again while READY's full sync runs.
    func killDuringReady(fraction: Double, number: Int) throws -> String {
        runner.link.events.close()
        runner.edus.removeAll()
        try supervisor.start()
        runner.control = try ControlClient(path: supervisor.controlSocket)
        try attachBoth()
        let link = try VMMLink(eventPath: supervisor.eventSocket, guest: guest, transcript: quiet)
        runner.link = link
        try link.events.require(.hello(version: 1, flags: 0, cap: guest.caps.cap, ecap: guest.caps.ecap))
        try link.events.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: guest.ramSize, offset: 0)]), fds: [guest.memfd])
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        let leaves = domains.reduce(0) { $0 + guest.expected($1.sid).count }
        let delay = min(fraction * Double(leaves) * microsPerLeafAtReady, 2e6)
        let pid = supervisor.pid
        try link.events.send(.ready)
        usleep(UInt32(delay))
        supervisor.kill()
        let reply = try? link.events.receive()
        if let reply, reply.status != .ok { throw SimError("READY, answered before the kill: \(reply.status.name): \(reply.message)") }
        let replied = reply != nil
        if replied { stats.readyAcked += 1 } else { stats.readyUnacked += 1 }
        return "kill \(number) (pid \(pid)) during the restart's READY (full sync of \(leaves) leaves), \(Int(delay)) µs after sending it; "
            + (replied ? "READY had been answered" : "no answer yet")
    }

    /// While the daemon is down and the VMM still holds the dead daemon's
    /// device fds: the guest unmaps a page (its invalidation has nowhere to
    /// go; READY's sync must apply it), and the device writes through it. The
    /// write lands: the dead daemon's container keeps its mappings until the
    /// last fd of its groups closes. Counted, not failed (nothing but the
    /// VMM closing those fds can end it); the check after the restart then
    /// probes that IOVA first among the unmapped ones.
    func unmapWhileDown() throws -> String {
        let (sid, d) = domains[samples.below(domains.count)]
        let candidates = live[d]!.filter { $0.key < Self.largeBase && $0.value.permission == .readWrite }.keys.sorted()
        guard let iova = samples.pick(candidates), let edu = runner.edus[sid] else { return "nothing to unmap while down" }
        let leaf = live[d]![iova]!
        lastBatchTouched = []
        _ = try unmap(d, iova, leaf, sizeShift: 12)
        let before = pattern(round: 1_000_000 + round, gpa: leaf.gpa)
        guest.memory.write(gpa: leaf.gpa, bytes: before)
        try edu.write(from: 0, iova: iova, count: 256)
        let landed = guest.memory.read(gpa: leaf.gpa, count: 4096)! != before
        if landed { stats.staleLanded += 1 } else { stats.staleBlocked += 1 }
        // The check prefers what the last batches touched: make it this page.
        recentUnmapped = [:]
        recentMapped = [:]
        return "while down, the guest unmapped \(sid) iova 0x\(String(iova, radix: 16)) and the device (dead daemon's fd) wrote through it: "
            + (landed ? "landed (the dead daemon's container still maps it)" : "blocked")
    }
}
