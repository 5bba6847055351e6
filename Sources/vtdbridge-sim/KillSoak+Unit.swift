import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

// MARK: - unit-restarts: the daemon as systemd runs it, restarted under a live stream
//
// vtdbridged@NAME runs under systemd with the unit as shipped; this process
// is the VMM, not root, and asks a root helper to kill, restart or upgrade
// the unit (SystemdUnitHandle). The guest streams map/unmap/remap batches
// as in the kill-soak, and around each restart:
//
// - during the outage the devices DMA through pages the guest keeps mapped,
//   with the device descriptors the VMM got before (never re-attached): the
//   container lives on in systemd's fd store, so every such DMA must land;
// - on some restarts the guest unmaps a page during the outage: its
//   invalidation cannot be acknowledged until a daemon is back, DMA through
//   the page still lands meanwhile (allowed: the guest has not been told the
//   unmap is done), and once the ack comes the page must be unreachable;
// - on some kills a large batch is in flight: the daemon dies between two of
//   its ioctls, and the next process settles the call it left;
// - READY's full sync after a restart with nothing changed makes 0 calls,
//   and after an outage unmap exactly 1 (that unmap);
// - then the kill-soak's checks: mappings equal the guest's, a replay makes
//   no call, DMA through kept pages hits them and unmapped IOVAs reach
//   nothing.
// Kill-to-READY is the daemon's READY time (status "restart"."ready-at-ns",
// CLOCK_REALTIME) minus the helper's time just before it acted.

extension VMTestRunner {
    func unitRestarts() throws {
        guard let unit else { throw SimError("unit-restarts needs --unit NAME (the daemon as systemd runs it)") }
        let soak = try KillSoak(runner: self, seed: soakSeed, kills: soakKills)
        try soak.runUnitRestarts(unit, kills: soakKills, inFlightKills: unitInFlightKills, restarts: unitRestartCount, upgrades: 1)
    }
}

extension KillSoak {
    enum UnitOutage: String {
        /// Nothing changes while the daemon is down: READY makes no call.
        case quiet
        /// The guest unmaps a page while the daemon is down.
        case unmap
        /// A large batch is in flight when the daemon is killed.
        case inFlight = "in-flight"
    }

    struct UnitTally {
        var kills = 0, restarts = 0, upgrades = 0
        var outageDMA = 0, outageDMAFailed = 0
        var outageUnmaps = 0, landedBeforeAck = 0, reachableAfterAck = 0
        var quietResyncs = 0, quietResyncCalls = 0
        var inFlight = 0, inFlightAcked = 0, settledCalls = 0
        var killToReady: [Double] = []
        var restartToReady: [Double] = []
    }

    func runUnitRestarts(_ unit: SystemdUnitHandle, kills: Int, inFlightKills: Int, restarts: Int, upgrades: Int) throws {
        let start = ContinuousClock.now
        var actions: [SystemdUnitHandle.Action] = Array(repeating: .kill, count: kills) + Array(repeating: .restart, count: restarts)
            + Array(repeating: .sigkill, count: inFlightKills)
        ops.shuffle(&actions)
        for u in 0..<upgrades { actions.insert(.upgrade, at: min(actions.count, actions.count / 2 + u)) }
        print("unit: seed \(seed): \(kills) SIGKILLs (systemctl kill), \(inFlightKills) SIGKILLs inside a batch (kill -KILL), \(restarts) systemctl restarts, \(upgrades) upgrade(s) of vtdbridged@\(unit.name)")
        try setUp()
        let before = try unit.perform(.exe)
        var tally = UnitTally()
        for (i, action) in actions.enumerated() {
            let outage: UnitOutage = switch (action, i % 2) {
            case (.sigkill, _): .inFlight
            case (_, 1): .unmap
            default: .quiet
            }
            var stage = "streaming before \(action.rawValue) \(i + 1)"
            do {
                for _ in 0..<2 { try deliverAcked(try makeBatch(ops: ops.inRange(4...24))) }
                stage = "\(action.rawValue) \(i + 1) (\(outage.rawValue))"
                let line = try restartOnce(unit, action, outage: outage, tally: &tally)
                stage = "the check after \(action.rawValue) \(i + 1)"
                let checked = try check()
                print("unit: \(i + 1)/\(actions.count) \(action.rawValue): \(line); check: \(checked)")
            } catch {
                throw SimError("seed \(seed), \(stage): \(error)")
            }
        }
        let after = try unit.perform(.exe)
        // exe → "ok T <running inode> <installed inode>"
        guard before.fields.count == 2, after.fields.count == 2 else { throw SimError("unreadable exe replies \(before.fields) \(after.fields)") }
        if upgrades > 0 {
            guard after.fields[0] == after.fields[1], after.fields[0] != before.fields[0] else {
                throw SimError("after the upgrade the daemon runs inode \(after.fields[0]), the installed binary is \(after.fields[1]), before it ran \(before.fields[0])")
            }
        }
        let t = tally
        print("unit: \(t.kills) kills, \(t.restarts) restarts, \(t.upgrades) upgrade(s) in \(String(format: "%.1f", seconds(start.duration(to: .now)))) s; "
              + "the running binary went from inode \(before.fields[0]) to \(after.fields[0])")
        print("unit: DMA through kept pages while the daemon was down: \(t.outageDMA) transfers, \(t.outageDMAFailed) failed")
        print("unit: pages unmapped during an outage: \(t.outageUnmaps); DMA through them before the ack landed \(t.landedBeforeAck) time(s) (allowed); reachable after the ack: \(t.reachableAfterAck)")
        print("unit: READY after a restart with nothing changed: \(t.quietResyncs) resyncs, \(t.quietResyncCalls) kernel calls in all")
        print("unit: kills with a batch in flight: \(t.inFlight) (\(t.inFlightAcked) acked before the kill); calls settled from the journal: \(t.settledCalls)")
        print("unit: kill-to-READY \(percentiles(t.killToReady)); restart-to-READY \(percentiles(t.restartToReady))")
        guard t.outageDMAFailed == 0, t.reachableAfterAck == 0, t.quietResyncCalls == 0 else {
            throw SimError("DMA failures on kept pages \(t.outageDMAFailed), acked unmapped pages reachable \(t.reachableAfterAck), calls by unchanged resyncs \(t.quietResyncCalls): all must be 0")
        }
        runner.transcript.check("\(t.kills) SIGKILLs, \(t.restarts) restarts and \(t.upgrades) upgrade under systemd: kept pages DMA'd through every outage, every resync of unchanged tables made 0 calls, no acked unmap stayed reachable")
    }

    func percentiles(_ ms: [Double]) -> String {
        guard !ms.isEmpty else { return "-" }
        let s = ms.sorted()
        func p(_ q: Double) -> Double { s[min(s.count - 1, Int((q * Double(s.count)).rounded(.up)) - 1)] }
        return String(format: "p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d)", p(0.5), p(0.99), s.last!, s.count)
    }

    /// One kill, restart or upgrade, with the outage `outage`; returns a
    /// one-line account.
    func restartOnce(_ unit: SystemdUnitHandle, _ action: SystemdUnitHandle.Action, outage: UnitOutage,
                     tally: inout UnitTally) throws -> String {
        var notes: [String] = []
        var inFlightBatch: [InvalidationDescriptor]?
        var argument: String?
        if outage == .inFlight {
            guard let pid = try runner.control.require("status")["pid"]?.intValue else { throw SimError("status has no pid") }
            argument = String(pid)
            // Large enough that the kill, which takes a FIFO round trip to
            // the root helper, lands inside it: a few thousand ioctls.
            let batch = try makeBatch(ops: ops.inRange(2000...4000))
            try runner.link.events.send(.invalidate(words(batch)))
            batchesSent += 1
            inFlightBatch = batch
        }
        let acted = try unit.perform(action, argument)
        switch action {
        case .kill, .sigkill: tally.kills += 1
        case .restart: tally.restarts += 1
        case .upgrade: tally.upgrades += 1
        default: break
        }
        if let batch = inFlightBatch {
            tally.inFlight += 1
            // An ack that came before the kill must be a clean one; none is
            // fine (the batch was cut): the guest's tables hold it, READY
            // applies what the dead process did not.
            if let reply = try? runner.link.events.receive() {
                try requireClean(reply, batch.count)
                tally.inFlightAcked += 1
                notes.append("the in-flight batch of \(batch.count) ops was acked before the kill")
            } else {
                notes.append("the in-flight batch of \(batch.count) ops was cut by the kill")
            }
        }
        // The outage: the old connection is gone (EOF), the devices still DMA.
        runner.link.events.close()
        let dma = try dmaThroughKeptPages(rounds: 2)
        tally.outageDMA += dma.transfers
        tally.outageDMAFailed += dma.failed
        notes.append("outage DMA \(dma.transfers - dma.failed)/\(dma.transfers) landed")
        var outageUnmap: (sid: SourceID, iova: UInt64, gpa: UInt64, invalidation: [InvalidationDescriptor])?
        if outage == .unmap {
            outageUnmap = try unmapDuringOutage()
            if let u = outageUnmap {
                tally.outageUnmaps += 1
                // Not yet acknowledged to the guest: the kernel may still map it.
                if try probe(u.sid, iova: u.iova, gpa: u.gpa) { tally.landedBeforeAck += 1 }
            }
        }

        // The VMM reconnects (its connect waits in the stored listener's
        // backlog) and re-sends its state; READY is the resync.
        let link = try VMMLink(eventPath: unit.eventSocket, guest: guest, transcript: quiet)
        runner.link = link
        try link.events.require(.hello(version: 1, flags: 0, cap: guest.caps.cap, ecap: guest.caps.ecap))
        try link.events.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: guest.ramSize, offset: 0)]), fds: [guest.memfd])
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        let ready = try link.events.request(.ready)
        guard ready.status == .ok else {
            throw SimError("READY after the \(action.rawValue): \(ready.status.name): \(ready.message)")
        }
        // READY's reply carries no counts; the daemon records its resync.
        runner.control = try ControlClient(path: unit.controlSocket)
        let status = try runner.control.require("status")
        let restart = status["restart"]
        guard let maps = restart?["resync-maps"]?.intValue, let unmaps = restart?["resync-unmaps"]?.intValue else {
            throw SimError("after the \(action.rawValue) status has no resync counts: \(restart?.serialized ?? "no restart object")")
        }
        let body = (maps: maps, unmaps: unmaps)
        let calls = maps + unmaps
        switch outage {
        case .quiet:
            tally.quietResyncs += 1
            tally.quietResyncCalls += calls
            notes.append("READY: \(calls) calls")
        case .unmap:
            // Exactly the page the guest unmapped while no daemon ran.
            guard body.maps == 0, body.unmaps == (outageUnmap == nil ? 0 : 1) else {
                throw SimError("READY after an outage unmap made \(body.maps) maps and \(body.unmaps) unmaps; expected 0 and \(outageUnmap == nil ? 0 : 1)")
            }
            notes.append("READY: \(body.unmaps) unmap (the outage's)")
        case .inFlight:
            notes.append("READY: \(body.maps) maps, \(body.unmaps) unmaps (what the cut batch left)")
        }
        // The guest's queued invalidation goes now; once it is acked the
        // page must be unreachable.
        if let u = outageUnmap {
            try deliverAcked(u.invalidation)
            if try probe(u.sid, iova: u.iova, gpa: u.gpa) {
                tally.reachableAfterAck += 1
                notes.append("REACHABLE after the ack: \(u.sid) iova 0x\(String(u.iova, radix: 16))")
            }
        }
        let readyAt = restart?["ready-at-ns"]?.intValue ?? 0
        let adopted = restart?["devices"]?.intValue ?? 0
        let settled = restart?["settled-calls"]?.intValue ?? 0
        guard adopted == domains.count, restart?["distrusted"]?.intValue == 0 else {
            throw SimError("after the \(action.rawValue) the daemon adopted \(adopted) of \(domains.count) devices: \(restart?.serialized ?? "no restart object")")
        }
        tally.settledCalls += settled
        let ms = Double(Int64(readyAt) - acted.startedAt) / 1e6
        let killed = action == .kill || action == .sigkill
        if killed { tally.killToReady.append(ms) } else { tally.restartToReady.append(ms) }
        notes.append(String(format: "%@-to-READY %.0f ms", killed ? "kill" : "restart", ms))
        if settled > 0 { notes.append("\(settled) call(s) settled from the journal") }
        return notes.joined(separator: "; ")
    }

    /// DMA through the permanent scratch pages of each device, with the
    /// device descriptors the VMM holds: a pattern written to the source
    /// page must arrive at the target page. Returns transfers and failures.
    func dmaThroughKeptPages(rounds: Int) throws -> (transfers: Int, failed: Int) {
        var transfers = 0, failed = 0
        for r in 0..<rounds {
            for (sid, d) in domains {
                guard let edu = runner.edus[sid] else { throw SimError("no device fd for \(sid)") }
                let source = Self.scratchGPA(d), target = Self.scratchGPA(d) + 0x1000
                round += 1
                let bytes = Array(pattern(round: round, gpa: source).prefix(1024))
                guest.memory.write(gpa: source, bytes: bytes)
                guest.memory.write(gpa: target, bytes: [UInt8](repeating: UInt8(r & 0xff), count: 1024))
                transfers += 1
                do {
                    try edu.read(iova: Self.scratchSource, count: 1024)
                    try edu.write(from: 0, iova: Self.scratchTarget, count: 1024)
                } catch {
                    failed += 1
                    continue
                }
                if guest.memory.read(gpa: target, count: 1024) != bytes { failed += 1 }
            }
        }
        return (transfers, failed)
    }

    /// The guest unmaps one kept read-write 4 KiB page while no daemon runs;
    /// its invalidation is returned, to be sent once one is back.
    func unmapDuringOutage() throws -> (sid: SourceID, iova: UInt64, gpa: UInt64, invalidation: [InvalidationDescriptor])? {
        let (sid, d) = domains[samples.below(domains.count)]
        let candidates = live[d]!.filter { $0.key < Self.largeBase && $0.value.size == 4096 && $0.value.permission == .readWrite }.keys.sorted()
        guard let iova = samples.pick(candidates) else { return nil }
        let leaf = live[d]![iova]!
        lastBatchTouched = []
        let invalidation = try unmap(d, iova, leaf, sizeShift: 12)
        return (sid, iova, leaf.gpa, invalidation)
    }

    /// Whether a device write through `iova` reaches guest page `gpa`.
    func probe(_ sid: SourceID, iova: UInt64, gpa: UInt64) throws -> Bool {
        guard let edu = runner.edus[sid] else { throw SimError("no device fd for \(sid)") }
        round += 1
        let before = pattern(round: 2_000_000 + round, gpa: gpa)
        guest.memory.write(gpa: gpa, bytes: before)
        try? edu.write(from: 0, iova: iova, count: 256)
        return guest.memory.read(gpa: gpa, count: 4096) != before
    }
}
