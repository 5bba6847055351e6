import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

// MARK: - kill-soak: SIGKILL the daemon at random points under a map/unmap/remap stream
//
// The guest keeps changing its tables (map, unmap, remap, 2 MiB leaves) in
// both domains, each batch of invalidations delivered to the daemon; at a
// random point the daemon is SIGKILLed: between two batches, while a batch is
// in flight, from a second thread at a random time, or while the restarted
// daemon is doing the full sync of READY. It is restarted, the VMM
// reconnects (two orders, see `Reconnect`), and then:
//
//   1. the daemon's `mappings` of each device equal the guest's tables
//      (SimulatedGuest's model), entry for entry;
//   2. a replay over the unchanged tables makes no kernel call;
//   3. real edu DMA through the kernel's IOMMU: for pages the guest kept, a
//      read and a write through the IOVA hit exactly that guest page (as
//      their permission allows; a write through a read-only page must not
//      land); for IOVAs the guest unmapped, a write reaches no guest memory
//      at all (checked over every guest page any of these domains ever
//      mapped).
//
// Everything random comes from one seed (printed; --soak-seed N repeats it),
// through SplitMix64 and its draws (VTdGuest), which are fully specified.
// The kill plan is a function of the seed alone; where a timed kill lands
// depends on the machine's speed and is logged with each kill.

extension VMTestRunner {
    func killSoak() throws {
        let soak = try KillSoak(runner: self, seed: soakSeed, kills: soakKills)
        try soak.run()
    }
}

/// One run of the kill-soak (see the top of this file).
final class KillSoak {
    typealias Leaf = SimulatedGuest.Leaf

    let runner: VMTestRunner
    let seed: UInt64
    let kills: Int
    let plan: [SoakKillPlan]
    var ops: SplitMix64
    var samples: SplitMix64
    let kernelLog = KernelLog()
    let quiet = Transcript(quiet: true)

    /// Each device's domain, and what the soak keeps per domain: the live
    /// leaves of its windows (the guest's model restricted to them) and, for
    /// IOVAs the guest unmapped and has not mapped again, the leaf they had.
    let domains: [(sid: SourceID, domain: UInt16)]
    var live: [UInt16: [UInt64: Leaf]] = [:]
    var gone: [UInt16: [UInt64: Leaf]] = [:]
    /// IOVAs the last two batches before a kill mapped or unmapped: the
    /// samples prefer them (those batches are the ones a kill interrupts).
    var recentMapped: [UInt16: [UInt64]] = [:]
    var recentUnmapped: [UInt16: [UInt64]] = [:]
    var lastBatchTouched: [(UInt16, UInt64, Bool)] = []

    /// Microseconds per operation of an acked batch, send to ack (for timed
    /// kills), from batches of 16 operations or more.
    var microsPerOp = 150.0
    /// Microseconds per leaf of READY's full sync, from restarts with both
    /// devices attached at READY.
    var microsPerLeafAtReady = 150.0
    var batchesSent = 0, opsSent = 0
    var stats = (maps: 0, unmaps: 0, remaps: 0, large: 0, inFlightUnacked: 0, inFlightAcked: 0, readyUnacked: 0, readyAcked: 0,
                 keptChecked: 0, unmappedChecked: 0, faultLines: 0, faultsAtUnmapped: 0, faultsAtKept: 0, staleLanded: 0, staleBlocked: 0)
    var restartTimes: [Double] = []
    var checkTimes: [Double] = []
    /// The DMA check's round: each round writes fresh patterns.
    var round = 0

    // Layout. edu's DMA mask is 28 bits: every IOVA stays below 256 MiB.
    static let windowBase: UInt64 = 0x0400_0000       // 4 KiB leaves: 256 slots
    static let windowSlots = 256
    static let largeBase: UInt64 = 0x0600_0000        // 2 MiB leaves: 2 slots per domain
    static let largeSlots = 2
    static let scratchSource: UInt64 = 0x0500_0000    // permanent rw pages per domain
    static let scratchTarget: UInt64 = 0x0500_1000
    static let pool4K: UInt64 = 0x80_0000              // 1024 data pages, 8..12 MiB
    static let pool4KPages = 1024
    static let pool2M: UInt64 = 0x100_0000             // 4 regions of 2 MiB, 16..24 MiB
    static let pool2MRegions = 4
    /// Every GPA any mapping of these domains ever points at lies below this:
    /// the earlier scenarios' pages (< 6 MiB), the pools, the scratch pages.
    static let watched: UInt64 = 0x180_0000
    static func scratchGPA(_ domain: UInt16) -> UInt64 { 0xF0_0000 + UInt64(domain - 1) * 0x2000 }

    init(runner: VMTestRunner, seed: UInt64, kills: Int) throws {
        self.runner = runner
        self.seed = seed
        self.kills = kills
        var planRNG = SplitMix64(seed: seed)
        plan = SoakKillPlan.make(kills: kills, rng: &planRNG)
        ops = SplitMix64(seed: seed ^ 0x6f70_7300_0000_0001)
        samples = SplitMix64(seed: seed ^ 0x7361_6d70_0000_0002)
        domains = try runner.devices.map { sid in
            guard let d = runner.guest.deviceDomain[sid] else { throw SimError("\(sid) has no context entry") }
            return (sid, d)
        }
        guard Set(domains.map(\.domain)).count == domains.count else {
            throw SimError("kill-soak needs each device in its own domain: \(domains)")
        }
        guard runner.guest.memory.hostAddress(gpa: 0, size: Self.watched) != nil else {
            throw SimError("guest RAM too small for the soak's layout")
        }
    }

    var guest: SimulatedGuest { runner.guest }
    var supervisor: DaemonSupervisor { runner.supervisor }

    // MARK: the run

    func run() throws {
        let start = ContinuousClock.now
        print("soak: seed \(seed) (repeat with: vtdbridge-sim vm-test --soak-seed \(seed) kill-soak), \(kills) SIGKILLs")
        try setUp()
        var k = 0
        while k < kills {
            let first = k
            var notes: [String] = []
            var stage = "streaming toward kill \(k + 1) (\(plan[k].point))"
            let restarted: Double, how: String, checked: String, c: ContinuousClock.Instant
            do {
                notes.append(try killDuringStream(plan[k], number: k + 1))
                k += 1
                // Kills during READY interrupt the restart after the previous kill.
                while k < kills, case let .duringReady(fraction) = plan[k].point {
                    stage = "the restart interrupted by kill \(k + 1)"
                    let t = ContinuousClock.now
                    notes.append(try killDuringReady(fraction: fraction, number: k + 1))
                    restartTimes.append(seconds(t.duration(to: .now)))
                    k += 1
                }
                let reconnect = plan[k - 1].reconnect
                if case .boundary = plan[k - 1].point, reconnect == .holdFDs {
                    stage = "the unmap while down after kill \(k)"
                    notes.append(try unmapWhileDown())
                }
                stage = "the restart after kill \(k) (\(reconnect.rawValue))"
                let t = ContinuousClock.now
                how = try restart(reconnect)
                restarted = seconds(t.duration(to: .now))
                restartTimes.append(restarted)
                stage = "the check after kill \(k) (reconnect \(reconnect.rawValue))"
                c = ContinuousClock.now
                checked = try check()
            } catch {
                throw SimError("seed \(seed), \(stage)\(notes.isEmpty ? "" : "; " + notes.joined(separator: "; then ")): \(error)")
            }
            let checkTime = seconds(c.duration(to: .now))
            checkTimes.append(checkTime)
            let numbers = (first + 1...k).map(String.init).joined(separator: "+")
            print("soak: kill \(numbers)/\(kills): \(notes.joined(separator: "; then ")); restart \(String(format: "%.1f", restarted)) s (\(how)); check \(String(format: "%.1f", checkTime)) s: \(checked)")
        }
        let total = seconds(start.duration(to: .now))
        let s = stats
        print("soak: \(kills) SIGKILLs, seed \(seed): \(batchesSent) batches, \(opsSent) ops (\(s.maps) maps, \(s.unmaps) unmaps, \(s.remaps) remaps, \(s.large) of them 2 MiB); "
              + "in-flight kills: \(s.inFlightUnacked) before the ack, \(s.inFlightAcked) after it; READY kills: \(s.readyUnacked) before its reply, \(s.readyAcked) after; "
              + "DMA through a page unmapped while the daemon was down, by the dead daemon's device fd: \(s.staleLanded) landed, \(s.staleBlocked) blocked")
        print("soak: checked \(s.keptChecked) kept pages by DMA (all hit their guest page) and \(s.unmappedChecked) unmapped IOVAs (none reached memory); "
              + "DMAR fault lines \(s.faultLines), \(s.faultsAtUnmapped) at the unmapped IOVAs probed, \(s.faultsAtKept) naming a kept page")
        print("soak: \(String(format: "%.1f", total)) s; restart \(summary(restartTimes)); checks \(summary(checkTimes))")
        runner.transcript.check("\(kills) SIGKILLs at random points; after each restart the daemon's mappings equal the guest's, kept pages DMA correctly, unmapped IOVAs reach nothing")
    }

    func summary(_ v: [Double]) -> String {
        guard !v.isEmpty else { return "-" }
        return String(format: "mean %.2f s, max %.2f s", v.reduce(0, +) / Double(v.count), v.max()!)
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// The scratch pages and a first population, so the first kill has something to lose.
    func setUp() throws {
        var batch: [InvalidationDescriptor] = []
        for (_, d) in domains {
            live[d] = [:]
            gone[d] = [:]
            batch += try guest.map(domain: d, iova: Self.scratchSource, gpa: Self.scratchGPA(d))
            batch += try guest.map(domain: d, iova: Self.scratchTarget, gpa: Self.scratchGPA(d) + 0x1000)
        }
        try deliverAcked(batch)
        for _ in 0..<4 { try deliverAcked(try makeBatch(ops: 32)) }
        try runner.verifyShadow()
    }
}
