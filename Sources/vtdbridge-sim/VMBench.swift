import ArgumentParser
import Bridge
import CPosix
import Foundation
import Glibc
import Histogram
import Logging
import VFIO
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

/// The in-VM figures of `make bench`: the daemon's cost against the raw
/// ioctls, on real VFIO, in the same VM run. Prints BENCH-ROW lines that
/// vtdbridge-bench turns into table rows.
struct VMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm-bench",
        abstract: "Measure MAP/UNMAP through the daemon against a raw ioctl loop (inside the test VM).")

    @Option(help: ArgumentHelp("The daemon binary.", valueName: "PATH"))
    var daemon = "/bin/vtdbridged"

    @Option(help: "Distinct 4 KiB pages mapped then unmapped per run.")
    var pages = 16_384

    @Option(help: "Repetitions of each throughput figure.")
    var repetitions = 3

    func run() throws {
        let edus = VMTestRunner.eduDevices()
        guard edus.count >= 2 else { throw SimError("vm-bench needs two edu devices bound to vfio-pci") }
        let ram = UInt64(pages) * 4096 + (32 << 20)
        let guest = try SimulatedGuest(ramSize: ram, tableArea: 16 << 20, caps: .make())

        // (b) the raw loop: the same ioctls on one container, no daemon.
        var quiet = Logger(label: "bench")
        quiet.logLevel = .critical
        let group = try Group.open(pciAddress: edus[1], logger: quiet)
        let container = try Container.open(logger: quiet)
        try container.attach(group)
        var raw: [Double] = []
        var rawLatency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for _ in 0..<repetitions {
            let start = ContinuousClock.now
            for phase in 0..<2 {
                for i in 0..<pages {
                    let iova = 0x100_0000 + UInt64(i) * 4096
                    let t = ContinuousClock.now
                    if phase == 0 {
                        try container.map(iova: iova, size: 4096, hostAddress: guest.memory.hostAddress(gpa: 0x10_0000 + UInt64(i) * 4096, size: 4096)!, permission: .readWrite)
                    } else {
                        try container.unmap(iova: iova, size: 4096)
                    }
                    rawLatency.record(UInt64(t.duration(to: .now).nanosecondCount))
                }
            }
            raw.append(Double(2 * pages) / seconds(start.duration(to: .now)))
        }
        try container.close()
        try group.close()

        // (a) through the daemon, one invalidation per page, each acked:
        // first as deployed by default, then tuned for latency (daemon and
        // simulator pinned to one vCPU each, the daemon busy-polling its
        // event socket, the simulator spinning for the ack as a guest spins
        // on its wait descriptor).
        let plain = try throughDaemon(guest: guest, edu: edus[0], tuned: false)
        let tuned = try throughDaemon(guest: guest, edu: edus[0], tuned: true)

        let rawMedian = median(raw)
        func row(_ figure: String, _ n: Int, _ value: String, _ reference: String, _ goal: String) {
            print("BENCH-ROW \(figure)|\(n)|\(value)|\(reference)|\(goal)")
        }
        row("VM: raw MAP+UNMAP ioctl loop, \(pages) pages", repetitions, "\(fmt(raw.min()!)) / \(fmt(rawMedian)) ops/s", "the kernel's limit", "")
        for (run, label) in [(plain, ""), (tuned, ", tuned (pinned, busy-poll)")] {
            for batch in [1, 64] {
                let r = run.rates[batch]!
                let ratio = median(r) / rawMedian
                row("VM: through the daemon, \(batch) invalidation\(batch == 1 ? "" : "s") per batch\(label)", repetitions,
                    "\(fmt(r.min()!)) / \(fmt(median(r))) ops/s", "ratio to raw: \(String(format: "%.2f", ratio))",
                    batch == 64 ? (ratio >= 0.85 ? "met (≥ 0.85)" : "MISSED (≥ 0.85)") : "")
            }
            for s in run.stageRows { print("BENCH-ROW " + s) }
        }
        for (run, label) in [(plain, ""), (tuned, ", tuned")] {
            row("VM: invalidation → ack latency, single page\(label)", Int(run.latency.totalCount),
                "p50 \(us(run.latency.valueAtPercentile(50))) µs, p99 \(us(run.latency.valueAtPercentile(99))) µs, max \(us(run.latency.max)) µs",
                "raw ioctl p50 \(us(rawLatency.valueAtPercentile(50))) µs, p99 \(us(rawLatency.valueAtPercentile(99))) µs", "")
        }
    }

    struct DaemonRun {
        var rates: [Int: [Double]] = [1: [], 64: []]
        var stageRows: [String] = []
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }


    func throughDaemon(guest: SimulatedGuest, edu: String, tuned: Bool) throws -> DaemonRun {
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
        // The guest's side of each page is what a guest kernel does: one PTE
        // store and one page-selective descriptor. Where each PTE lives and
        // the descriptor words are worked out before the clock starts (the
        // table pages are made by a map that is cleared again before the
        // daemon is told anything), so the loop times the daemon, not the
        // simulator's own bookkeeping, which a first version of this loop
        // spent ~20 µs per page on under TCG.
        let iovaBase: UInt64 = 0x100_0000
        var ptes: [UnsafeMutablePointer<UInt64>] = []
        var leaves: [UInt64] = []
        var pageWords: [InvalidationWords] = []
        for i in 0..<pages {
            let iova = iovaBase + UInt64(i) * 4096
            let gpa = 0x10_0000 + UInt64(i) * 4096
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
        var words: [InvalidationWords] = []
        words.reserveCapacity(65)
        for batch in [1, 64] {
            for rep in 0..<repetitions {
                let before = try control.require("status")["stages"]
                let start = ContinuousClock.now
                for phase in 0..<2 {
                    for i in 0..<pages {
                        ptes[i].pointee = phase == 0 ? leaves[i] : 0
                        words.append(pageWords[i])
                        if words.count == batch || i == pages - 1 {
                            words.append(waitWords)
                            let t = ContinuousClock.now
                            let r = try link.deliver(words: words)
                            if batch == 1 { run.latency.record(UInt64(t.duration(to: .now).nanosecondCount)) }
                            guard Int(r.maps + r.unmaps) == words.count - 1 else {
                                throw SimError("batch of \(words.count - 1) made \(r.maps) maps and \(r.unmaps) unmaps")
                            }
                            words.removeAll(keepingCapacity: true)
                        }
                    }
                }
                run.rates[batch]!.append(Double(2 * pages) / seconds(start.duration(to: .now)))
                if rep == 0, let before {
                    let after = try control.require("status")["stages"]!
                    func delta(_ key: String) -> Double {
                        Double((after[key]?.int64Value ?? 0) - (before[key]?.int64Value ?? 0))
                    }
                    let requests = delta("requests")
                    let perOp = Double(2 * pages)
                    run.stageRows.append("daemon stages, batch \(batch), per invalidation\(tuned ? ", tuned" : "")|1|receive \(fmt(delta("receive-ns") / perOp / 1000)) µs, walk \(fmt(delta("walk-ns") / perOp / 1000)) µs, ioctl \(fmt(delta("ioctl-ns") / perOp / 1000)) µs, ack \(fmt(delta("ack-ns") / perOp / 1000)) µs|over \(Int(requests)) requests; the rest of the round trip is the socket and the simulator||")
                }
            }
        }
        // Leave the guest's domain as the next run expects to find it.
        _ = try guest.detach(sid)
        return run
    }

    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
    func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
    func fmt(_ x: Double) -> String { x >= 100 ? String(Int(x.rounded())) : String(format: "%.2f", x) }
    func us(_ ns: UInt64) -> String { String(format: "%.1f", Double(ns) / 1000) }
}
