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
// Everything random comes from one seed (printed; --soak-seed N repeats it).
// The kill plan is a function of the seed alone; where a timed kill lands
// depends on the machine's speed and is logged with each kill.

/// The soak's choices come from SplitMix64 (VTdGuest), fully specified, so
/// a seed means the same run on every machine and Swift version.
typealias SoakRandom = SplitMix64

extension SplitMix64 {
    /// Uniform in 0..<n, by rejection (independent of the standard library's algorithms).
    mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        let bound = UInt64(n)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let v = next()
            if v < limit { return Int(v % bound) }
        }
    }
    mutating func inRange(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[below(a.count)] }
    mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }
}

/// Where one SIGKILL lands.
enum SoakKillPoint: CustomStringConvertible {
    /// After `batches` acked batches, between two batches: nothing in flight.
    case boundary(batches: Int)
    /// After `batches` acked batches, a batch of `ops` operations is sent and
    /// the daemon killed `fraction` × (the batch's expected time) later,
    /// without waiting for its ack.
    case inFlight(batches: Int, ops: Int, fraction: Double)
    /// A second thread kills the daemon `milliseconds` after the stream
    /// starts; the stream sends batches back to back until the channel breaks.
    case timer(milliseconds: Int)
    /// During the restart after the previous kill: READY is sent (the
    /// daemon's full sync of everything the guest mapped) and the daemon
    /// killed `fraction` × (that sync's expected time) later.
    case duringReady(fraction: Double)

    var description: String {
        switch self {
        case let .boundary(n): "between batches, after \(n) acked batch(es)"
        case let .inFlight(n, ops, f): "in flight: after \(n) acked batch(es), a batch of \(ops) op(s) sent, kill at \(String(format: "%.2f", f)) × its expected time"
        case let .timer(ms): "from a second thread, \(ms) ms into a back-to-back stream"
        case let .duringReady(f): "during the restart's READY full sync, at \(String(format: "%.2f", f)) × its expected time"
        }
    }
}

/// How the VMM comes back after a kill.
enum SoakReconnect: String {
    /// The VMM drops its device fds first (they pin the dead daemon's
    /// groups), the daemon restarts and restores its recorded attachments,
    /// the VMM asks for its device fds again, then HELLO … READY.
    case dropFirst = "drop-fds-first"
    /// The daemon restarts while the VMM still holds the dead daemon's
    /// device fds (its recorded attachments fail with EBUSY and are retried);
    /// the VMM reconnects (HELLO … READY with no device attached), then drops
    /// the fds and attaches: the attach's own sync maps everything.
    case holdFDs = "hold-fds"
}

struct SoakKillPlan {
    var point: SoakKillPoint
    var reconnect: SoakReconnect

    /// A plan for `kills` kills: each kind in a fixed proportion, shuffled;
    /// parameters drawn from the seed. The first kill is never during READY
    /// (there is no restart before it).
    static func make(kills: Int, rng: inout SoakRandom) -> [SoakKillPlan] {
        enum Kind { case boundary, inFlight, timer, duringReady }
        let cycle: [Kind] = [.inFlight, .boundary, .timer, .inFlight, .duringReady, .boundary, .timer, .inFlight, .boundary, .timer]
        var kinds = (0..<kills).map { cycle[$0 % cycle.count] }
        rng.shuffle(&kinds)
        if case .duringReady = kinds.first, let i = kinds.firstIndex(where: { $0 != .duringReady }) { kinds.swapAt(0, i) }
        return kinds.map { kind in
            let point: SoakKillPoint
            switch kind {
            case .boundary: point = .boundary(batches: rng.inRange(1...8))
            case .inFlight: point = .inFlight(batches: rng.inRange(0...6), ops: rng.inRange(8...64), fraction: rng.unit() * 0.25)
            case .timer: point = .timer(milliseconds: rng.inRange(5...400))
            case .duringReady: point = .duringReady(fraction: rng.unit())
            }
            return SoakKillPlan(point: point, reconnect: rng.below(2) == 0 ? .dropFirst : .holdFDs)
        }
    }
}

/// Kills the daemon from a second thread after a delay, unless cancelled first.
final class SoakKillTimer: @unchecked Sendable {
    // @unchecked: the state is behind `lock`; the supervisor is touched only
    // by this thread until `finished`, and by the main thread after it.
    private let lock = NSLock()
    private let supervisor: DaemonSupervisor
    private let delay: Duration
    private var _fired = false, _cancelled = false, _finished = false

    init(supervisor: DaemonSupervisor, delay: Duration) {
        self.supervisor = supervisor
        self.delay = delay
    }

    func start() { Thread { self.run() }.start() }

    private func run() {
        let deadline = ContinuousClock.now + delay
        while ContinuousClock.now < deadline {
            if cancelledNow { break }
            usleep(500)
        }
        lock.lock()
        if !_cancelled {
            _fired = true
            lock.unlock()
            supervisor.kill()
            lock.lock()
        }
        _finished = true
        lock.unlock()
    }

    private var cancelledNow: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }

    /// Stops the timer if it has not fired; returns whether it had.
    func cancel() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if !_fired { _cancelled = true }
        return _fired
    }

    func waitUntilFinished() {
        while true {
            lock.lock()
            let done = _finished
            lock.unlock()
            if done { return }
            usleep(1_000)
        }
    }
}

/// The VM kernel's log, read from /dev/kmsg from the soak's start on: the
/// intel-iommu driver logs each DMA fault it handles ("DMAR: [DMA Write
/// NO_PASID] Request device [00:03.0] fault addr 0x4012000 …"), rate-limited
/// to 10 per 5 s, so a missing line proves nothing but a present one does.
final class KernelLog {
    private let fd: Int32
    init() {
        fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd >= 0 { lseek(fd, 0, SEEK_END) }
    }
    deinit { if fd >= 0 { close(fd) } }

    struct Fault: Hashable {
        var device: String
        var page: UInt64
        var write: Bool
    }

    /// DMA faults logged since the last call.
    func faults() -> [Fault] {
        guard fd >= 0 else { return [] }
        var out: [Fault] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EPIPE || errno == EINTR { continue }  // overwritten records; go on
                break
            }
            if n == 0 { break }
            let line = String(decoding: buffer[0..<n], as: UTF8.self)
            guard line.contains("DMAR"), let addr = line.range(of: "fault addr 0x"),
                  let dev = line.range(of: "Request device [") else { continue }
            let hex = line[addr.upperBound...].prefix { $0.isHexDigit }
            let device = line[dev.upperBound...].prefix { $0 != "]" }
            if let page = UInt64(hex, radix: 16) {
                out.append(Fault(device: String(device), page: page & ~0xfff, write: line.contains("DMA Write")))
            }
        }
        return out
    }
}

extension EduDevice {
    /// Starts one DMA transfer without waiting for it (see `dma`).
    func start(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool) throws {
        try device.write(source, to: bar0, at: 0x80)
        try device.write(destination, to: bar0, at: 0x88)
        try device.write(count, to: bar0, at: 0x90)
        try device.write(UInt64(toRAM ? 3 : 1), to: bar0, at: 0x98)
    }

    var busy: Bool {
        get throws { try device.read(UInt64.self, from: bar0, at: 0x98) & 1 != 0 }
    }
}

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
    var ops: SoakRandom
    var samples: SoakRandom
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
        var planRNG = SoakRandom(seed: seed)
        plan = SoakKillPlan.make(kills: kills, rng: &planRNG)
        ops = SoakRandom(seed: seed ^ 0x6f70_7300_0000_0001)
        samples = SoakRandom(seed: seed ^ 0x7361_6d70_0000_0002)
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

    // MARK: the stream

    /// One guest operation on a random domain: map, unmap or remap a 4 KiB
    /// page, or map/unmap a 2 MiB leaf. The tables are written now; the
    /// returned invalidations tell the daemon.
    func operation() throws -> [InvalidationDescriptor] {
        let d = domains[ops.below(domains.count)].domain
        let roll = ops.below(100)
        func perm() -> (Bool, Bool) {
            switch ops.below(10) { case 0: (true, false); case 1: (false, true); default: (true, true) }
        }
        if roll < 6 {
            let iova = Self.largeBase + UInt64(ops.below(Self.largeSlots)) << 21
            stats.large += 1
            if let old = live[d]![iova] { return try unmap(d, iova, old, sizeShift: 21) }
            let gpa = Self.pool2M + UInt64(ops.below(Self.pool2MRegions)) << 21
            return try map(d, iova, gpa: gpa, sizeShift: 21, perm: (true, true))
        }
        let mapped = live[d]!.keys.filter { $0 < Self.windowBase + UInt64(Self.windowSlots) << 12 }
        if roll < 50 || mapped.isEmpty {
            let iova = Self.windowBase + UInt64(ops.below(Self.windowSlots)) << 12
            let gpa = Self.pool4K + UInt64(ops.below(Self.pool4KPages)) << 12
            if live[d]![iova] != nil { stats.remaps += 1 }
            return try map(d, iova, gpa: gpa, sizeShift: 12, perm: perm())
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
        return out + (try map(d, iova, gpa: gpa, sizeShift: 12, perm: perm()))
    }

    func map(_ d: UInt16, _ iova: UInt64, gpa: UInt64, sizeShift: Int, perm: (Bool, Bool)) throws -> [InvalidationDescriptor] {
        stats.maps += 1
        gone[d]![iova] = nil
        live[d]![iova] = Leaf(gpa: gpa, size: 1 << UInt64(sizeShift), read: perm.0, write: perm.1)
        lastBatchTouched.append((d, iova, true))
        return try guest.map(domain: d, iova: iova, gpa: gpa, sizeShift: sizeShift, read: perm.0, write: perm.1)
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
        let candidates = live[d]!.filter { $0.key < Self.largeBase && $0.value.read && $0.value.write }.keys.sorted()
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

    // MARK: restart

    /// The daemon is dead; start it and bring the VMM back. Returns what the VMM saw.
    func restart(_ how: SoakReconnect) throws -> String {
        runner.link.events.close()
        if how == .dropFirst { runner.edus.removeAll() }
        try supervisor.start()
        runner.control = try ControlClient(path: supervisor.controlSocket)
        var note = how.rawValue
        switch how {
        case .dropFirst:
            let already = try attachBoth()
            try reconnect()
            note += ", \(already) of \(domains.count) restored by the daemon"
        case .holdFDs:
            let attachedAtHello = try reconnect()
            // Now the VMM lets go of the dead daemon's groups.
            runner.edus.removeAll()
            let already = try attachBoth()
            note += ", \(attachedAtHello) attached at HELLO, \(already) by the daemon's retry"
        }
        return note
    }

    /// HELLO … READY on a new connection; returns the device count HELLO reported.
    @discardableResult
    func reconnect() throws -> Int {
        let link = try VMMLink(eventPath: supervisor.eventSocket, guest: guest, transcript: quiet)
        runner.link = link
        let hello = try link.events.require(.hello(version: 1, flags: 0, cap: guest.caps.cap, ecap: guest.caps.ecap))
        var devices = -1
        if case let .hello(_, _, n) = hello.body { devices = Int(n) }
        try link.events.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: guest.ramSize, offset: 0)]), fds: [guest.memfd])
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        let t = ContinuousClock.now
        let ready = try link.events.request(.ready)
        guard ready.status == .ok else { throw SimError("READY after the restart: \(ready.status.name): \(ready.message)") }
        let leaves = domains.reduce(0) { $0 + guest.expected($1.sid).count }
        if devices == domains.count && leaves >= 16 {
            microsPerLeafAtReady = 0.5 * microsPerLeafAtReady + 0.5 * seconds(t.duration(to: .now)) * 1e6 / Double(leaves)
        }
        return devices
    }

    /// Asks for both device fds, retrying while the groups are still held
    /// (EBUSY until the last fd of the dead daemon's group is gone). Returns
    /// how many the daemon had attached already (restored or retried).
    @discardableResult
    func attachBoth() throws -> Int {
        runner.edus.removeAll()
        var already = 0
        for (i, (sid, _)) in domains.enumerated() {
            let host = runner.eduAddresses[i]
            var attempts = 0
            while true {
                let (result, fd) = try runner.control.call("attach", ["host": .string(host), "guest": .string(sid.description), "return-fd": true])
                switch result {
                case let .success(value):
                    guard let fd else { throw SimError("attach \(host) returned no device fd: \(value.serialized)") }
                    runner.edus[sid] = try EduDevice(adopting: fd, address: host)
                    if value["already-attached"]?.boolValue == true { already += 1 }
                case let .failure(error):
                    attempts += 1
                    if attempts > 50 { throw SimError("attach \(host) as \(sid) after the restart: \(error.code): \(error.message) (50 attempts over 10 s)") }
                    usleep(200_000)
                    continue
                }
                break
            }
        }
        return already
    }

    // MARK: checks

    /// The three checks after a restart; returns a one-line account.
    func check() throws -> String {
        // 1. The daemon's mappings equal the guest's tables, exactly.
        var counts: [Int] = []
        for (sid, _) in domains {
            let held = try runner.mappings(sid)
            var heldMap: [UInt64: String] = [:]
            for m in held {
                guard let iova = hexValue(m["iova"]) else { throw SimError("\(sid): unreadable mapping \(m.serialized)") }
                heldMap[iova] = describe(gpa: hexValue(m["gpa"]), size: hexValue(m["size"]), read: m["read"]?.boolValue == true, write: m["write"]?.boolValue == true)
            }
            var wantMap: [UInt64: String] = [:]
            for (iova, leaf) in guest.expected(sid) {
                wantMap[iova] = describe(gpa: leaf.gpa, size: leaf.size, read: leaf.read, write: leaf.write)
            }
            if heldMap != wantMap || held.count != wantMap.count {
                let hex = { (v: UInt64) in "0x" + String(v, radix: 16) }
                let missing = wantMap.keys.filter { heldMap[$0] == nil }.sorted().map { "\(hex($0))→\(wantMap[$0]!)" }
                let extra = heldMap.keys.filter { wantMap[$0] == nil }.sorted().map { "\(hex($0))→\(heldMap[$0]!)" }
                let differ = wantMap.keys.filter { heldMap[$0] != nil && heldMap[$0] != wantMap[$0] }.sorted()
                    .map { "\(hex($0)): daemon \(heldMap[$0]!), guest \(wantMap[$0]!)" }
                throw SimError("""
                    \(sid): the daemon holds \(held.count) mapping(s), the guest's tables \(wantMap.count): \
                    missing (the guest kept them) \(missing.prefix(12)), \
                    extra (the guest unmapped them) \(extra.prefix(12)), \
                    different \(differ.prefix(12))
                    """)
            }
            counts.append(held.count)
        }
        // 2. A replay over the tables just synced makes no kernel call.
        let replay = try runner.control.require("replay", ["all": true])
        guard replay["maps"]?.intValue == 0, replay["unmaps"]?.intValue == 0 else {
            throw SimError("a replay right after the restart made kernel calls: \(replay.serialized)")
        }
        // 3. Real DMA.
        let dma = try dmaCheck()
        return "mappings \(counts.map(String.init).joined(separator: "+")) = guest's, replay 0 calls; \(dma)"
    }

    func describe(gpa: UInt64?, size: UInt64?, read: Bool, write: Bool) -> String {
        "0x\(String(gpa ?? 0, radix: 16))/0x\(String(size ?? 0, radix: 16))/\(read ? "r" : "-")\(write ? "w" : "-")"
    }

    struct Sample {
        var sid: SourceID
        var slot: Int          // 0..<4 within the device; the buffer slot
        var global: Int        // 0..<8 over both devices; the page offsets
        var iova: UInt64       // the 4 KiB page DMA goes through
        var gpa: UInt64        // the page it maps (kept) or mapped (unmapped)
        var leaf: SimulatedGuest.Leaf
        var recent: Bool
        var text: String { "\(sid) iova 0x\(String(iova, radix: 16)) (gpa 0x\(String(gpa, radix: 16)), \(leaf.read ? "r" : "-")\(leaf.write ? "w" : "-")\(leaf.size > 4096 ? ", in a 2 MiB leaf" : "")\(recent ? ", touched by the last batches" : ""))" }
    }

    /// A page-sized pattern unique to this round and this page.
    func pattern(round: Int, gpa: UInt64) -> [UInt8] {
        var r = SoakRandom(seed: seed &+ UInt64(round) &* 0x1_0000_0001 ^ gpa)
        var out = [UInt8](repeating: 0, count: 4096)
        out.withUnsafeMutableBytes { p in
            for i in stride(from: 0, to: 4096, by: 8) { p.storeBytes(of: r.next(), toByteOffset: i, as: UInt64.self) }
        }
        return out
    }

    var round = 0

    /// Up to 4 kept pages and 4 unmapped IOVAs per device, the last batches'
    /// first; DMA through them on both devices at once; then every guest
    /// page these domains ever mapped must hold exactly what those DMAs
    /// should have written, and nothing else may have changed.
    func dmaCheck() throws -> String {
        round += 1
        var kept: [Sample] = []
        var unmapped: [Sample] = []
        for (i, (sid, d)) in domains.enumerated() {
            func choose(_ pool: [UInt64], _ recent: [UInt64], _ n: Int) -> [(UInt64, Bool)] {
                var chosen: [(UInt64, Bool)] = []
                var r = Array(Set(recent).intersection(pool)).sorted()
                samples.shuffle(&r)
                for iova in r.prefix(n / 2) { chosen.append((iova, true)) }
                var rest = pool.filter { iova in !chosen.contains { $0.0 == iova } }.sorted()
                samples.shuffle(&rest)
                for iova in rest.prefix(n - chosen.count) { chosen.append((iova, false)) }
                return chosen
            }
            let lastMapped = lastBatchTouched.filter { $0.0 == d && $0.2 }.map(\.1)
            let lastUnmapped = lastBatchTouched.filter { $0.0 == d && !$0.2 }.map(\.1)
            for (j, (iova, recent)) in choose(Array(live[d]!.keys), (recentMapped[d] ?? []) + lastMapped, 4).enumerated() {
                let leaf = live[d]![iova]!
                let sub = leaf.size > 4096 ? UInt64(samples.below(Int(leaf.size >> 12))) << 12 : 0
                kept.append(Sample(sid: sid, slot: j, global: i * 4 + j, iova: iova + sub, gpa: leaf.gpa + sub, leaf: leaf, recent: recent))
            }
            let unmappedPool = gone[d]!.keys.filter { live[d]![$0] == nil }
            for (j, (iova, recent)) in choose(unmappedPool, (recentUnmapped[d] ?? []) + lastUnmapped, 4).enumerated() {
                let leaf = gone[d]![iova]!
                let sub = leaf.size > 4096 ? UInt64(samples.below(Int(leaf.size >> 12))) << 12 : 0
                unmapped.append(Sample(sid: sid, slot: j, global: i * 4 + j, iova: iova + sub, gpa: leaf.gpa + sub, leaf: leaf, recent: recent))
            }
        }

        // Fresh contents: each kept page, and each domain's scratch source
        // (the bytes a write-only page and the unmapped IOVAs are sent).
        let memory = guest.memory
        var pages: [UInt64: [UInt8]] = [:]
        for s in kept where pages[s.gpa] == nil {
            pages[s.gpa] = pattern(round: round, gpa: s.gpa)
            memory.write(gpa: s.gpa, bytes: pages[s.gpa]!)
        }
        var scratch: [UInt16: [UInt8]] = [:]
        for (_, d) in domains {
            scratch[d] = pattern(round: round, gpa: Self.scratchGPA(d))
            memory.write(gpa: Self.scratchGPA(d), bytes: scratch[d]!)
            memory.write(gpa: Self.scratchGPA(d) + 0x1000, bytes: [UInt8](repeating: 0, count: 4096))
        }
        // What guest RAM must look like afterwards: as now, plus the expected writes.
        guard var expected = memory.read(gpa: 0, count: Int(Self.watched)) else { throw SimError("cannot read guest RAM") }
        func expect(_ gpa: UInt64, _ bytes: ArraySlice<UInt8>) {
            expected.replaceSubrange(Int(gpa)..<Int(gpa) + bytes.count, with: bytes)
        }

        // The DMA programme of each device. edu's buffer: [0, 1 KiB) gets the
        // kept pages' bytes, [2 KiB, 4 KiB) the domain's scratch source.
        let count: UInt64 = 256
        var programme: [SourceID: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)]] = [:]
        for (sid, d) in domains {
            var p: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)] = [(Self.scratchSource, EduDevice.buffer + 2048, 1024, false)]
            for s in kept where s.sid == sid {
                let a = UInt64(s.global) * count, b = 2048 + UInt64(s.global) * count
                let slot = EduDevice.buffer + UInt64(s.slot) * count
                if s.leaf.read {
                    p.append((s.iova + a, slot, count, false))
                    let source = pages[s.gpa]![Int(a)..<Int(a + count)]
                    if s.leaf.write {
                        p.append((slot, s.iova + b, count, true))
                        expect(s.gpa + b, source)
                    } else {
                        p.append((slot, Self.scratchTarget + UInt64(s.slot) * count, count, true))
                        expect(Self.scratchGPA(d) + 0x1000 + UInt64(s.slot) * count, source)
                        // Read-only: a write through it must not land.
                        p.append((slot, s.iova + b, count, true))
                    }
                } else {
                    p.append((EduDevice.buffer + 2048 + UInt64(s.slot) * count, s.iova + b, count, true))
                    expect(s.gpa + b, scratch[d]![Int(s.slot) * Int(count)..<(Int(s.slot) + 1) * Int(count)])
                }
            }
            for s in unmapped where s.sid == sid {
                p.append((EduDevice.buffer + 2048 + UInt64(s.slot) * count, s.iova + 1024 + UInt64(s.slot) * count, count, true))
            }
            programme[sid] = p
        }

        // Fault lines logged before this round's DMA belong to the last
        // round; those after it, to this one (edu raises the fault while the
        // transfer runs, before it reports it done).
        let earlier = kernelLog.faults()
        let dmaStart = ContinuousClock.now
        try runParallel(programme)
        let dmaTime = seconds(dmaStart.duration(to: .now))
        let faultLines = kernelLog.faults()
        stats.faultLines += earlier.count + faultLines.count

        // Compare every watched page (memcmp first: this runs under TCG).
        guard let host = memory.hostAddress(gpa: 0, size: Self.watched), let ram = UnsafeRawPointer(bitPattern: UInt(host)) else {
            throw SimError("cannot read guest RAM")
        }
        let same = expected.withUnsafeBytes { memcmp($0.baseAddress!, ram, Int(Self.watched)) == 0 }
        if !same {
            let actual = Array(UnsafeRawBufferPointer(start: ram, count: Int(Self.watched)))
            var problems: [String] = []
            for page in stride(from: 0, to: Int(Self.watched), by: 4096) where actual[page..<page + 4096] != expected[page..<page + 4096] {
                let gpa = UInt64(page)
                let first = (page..<page + 4096).first { actual[$0] != expected[$0] }!
                let last = (page..<page + 4096).last { actual[$0] != expected[$0] }!
                var who = unmapped.filter { $0.gpa == gpa }.map { "DMA through unmapped \($0.text) reached it" }
                who += kept.filter { $0.gpa == gpa }.map { "kept \($0.text) did not get its expected bytes\($0.leaf.write ? "" : ", or a write through it landed")" }
                if gpa >= Self.scratchGPA(1) && gpa < Self.scratchGPA(UInt16(domains.count)) + 0x2000 { who.append("a domain's scratch page (read-only kept pages copy here)") }
                problems.append("gpa 0x\(String(gpa + UInt64(first - page), radix: 16))..0x\(String(gpa + UInt64(last - page), radix: 16)) differs from what was expected\(who.isEmpty ? " (no sampled page maps it)" : ": " + who.joined(separator: "; "))")
            }
            throw SimError("""
                edu DMA after the restart: \(problems.count) guest page(s) not as expected:
                  \(problems.prefix(10).joined(separator: "\n  "))
                kept pages probed: \(kept.map(\.text))
                unmapped IOVAs probed: \(unmapped.map(\.text))
                DMAR faults logged: \(faultLines.map { "\($0.device) 0x\(String($0.page, radix: 16))" })
                """)
        }
        // A logged fault at a kept page would mean the kernel lost it.
        let keptPages = Set(kept.filter(\.leaf.write).map { KernelLog.Fault(device: deviceName($0.sid), page: $0.iova, write: true) }
                            + kept.filter(\.leaf.read).map { KernelLog.Fault(device: deviceName($0.sid), page: $0.iova, write: false) })
        // Every kept page was just shown to work, so a fault line naming one
        // can only be a late record of an earlier round: noted, not failed.
        let atKept = faultLines.filter { keptPages.contains($0) }
        stats.faultsAtKept += atKept.count
        let unmappedPages = Set(unmapped.map { "\(deviceName($0.sid)) \($0.iova)" })
        let atUnmapped = faultLines.filter { unmappedPages.contains("\($0.device) \($0.page)") }.count
        stats.faultsAtUnmapped += atUnmapped
        stats.keptChecked += kept.count
        stats.unmappedChecked += unmapped.count
        let recentKept = kept.filter(\.recent).count, recentGone = unmapped.filter(\.recent).count
        return "DMA: \(kept.count) kept page(s) (\(recentKept) from the last batches) hit their guest page, "
            + "\(unmapped.count) unmapped IOVA(s) (\(recentGone) from the last batches) reached no memory (DMA \(String(format: "%.1f", dmaTime)) s); "
            + "DMAR fault lines \(faultLines.count)\(atKept.isEmpty ? "" : ", \(atKept.count) naming a kept page (a late record)")"
    }

    /// The device as the VM kernel names it in fault lines ("00:03.0").
    func deviceName(_ sid: SourceID) -> String {
        let i = domains.firstIndex { $0.sid == sid }!
        return String(runner.eduAddresses[i].dropFirst(5))
    }

    /// Runs each device's DMA list in order, the devices side by side (edu
    /// finishes a transfer on a 100 ms timer, so two at once halve the time).
    func runParallel(_ programme: [SourceID: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)]]) throws {
        var next: [SourceID: Int] = [:]
        var started: [SourceID: ContinuousClock.Instant] = [:]
        for sid in programme.keys { next[sid] = 0 }
        while true {
            var running = 0
            for (sid, list) in programme {
                guard let edu = runner.edus[sid] else { throw SimError("\(sid) has no device fd") }
                let i = next[sid]!
                if let t = started[sid] {
                    if try edu.busy {
                        if t.duration(to: .now) > .seconds(20) { throw SimError("edu \(edu.address): DMA \(i) did not finish in 20 s") }
                        running += 1
                        continue
                    }
                    started[sid] = nil
                    next[sid] = i + 1
                }
                let j = next[sid]!
                if j < list.count {
                    try edu.start(source: list[j].source, destination: list[j].destination, count: list[j].count, toRAM: list[j].toRAM)
                    started[sid] = .now
                    running += 1
                }
            }
            if running == 0 { return }
            usleep(2_000)
        }
    }
}
