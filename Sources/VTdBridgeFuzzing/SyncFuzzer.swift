import Bridge
import Logging
import VFIO
import VTd

/// Fuzz target 3: the VT-d walker and the shadow sync (`GuestIOMMU`,
/// `AddressSpace`, `SecondLevelWalker`, `ContextLookup`,
/// `InvalidationDescriptor`) over arbitrary guest memory, root pointers,
/// capabilities and descriptor sequences, with a checking backend
/// (`CheckingBackend`) standing in for the kernel.
///
/// The input is a header (capabilities, host IOVA ranges, mapping quota,
/// failure injection, the product's walk budget, initial state, attached
/// source-ids) and a program of
/// operations: writes into guest RAM, batches of raw or composed
/// invalidation descriptors, replays, root-pointer / translation / memory
/// table changes, resets, attach and detach, a VMM's session as the daemon
/// drives it (HELLO: `beginLoading`; READY: `resumeSync`; the VMM gone
/// before READY: `abandonLoading`), a restarted daemon's suspension,
/// notifier events. `SyncProgram` (Seeds.swift) writes the same format.
///
/// The guest state in force is modelled apart from the bridge
/// (`SessionModel`): after an abandoned session it is the last completed
/// session's again, and the checks below read it from the model.
///
/// After every operation:
/// - the bridge's guest state (capabilities, source, memory table, root
///   table, translation, suspension) is the one in force;
/// - no backend call broke the backend's rules (inside the guest RAM in
///   force, no overlap, exact unmaps; see `CheckingBackend`);
/// - the shadow of every attached address space equals exactly what its
///   backend holds;
/// - the report counts exactly the maps and unmaps the backend accepted, and
///   at least one failure per refused call;
/// - a batch stops at the first descriptor `InvalidationDescriptor.decode`
///   refuses, with the waits before it counted;
/// - without injected failures: every mapping lies in the RAM installed now,
///   nothing is mapped while there is no RAM, or (table mode, not suspended)
///   while translation is off or there is no root table, and a detached
///   device's backend is empty;
/// - without injected failures, after a replay, a READY or an abandoned
///   session that hit no mapping quota and no walk budget: the space holds
///   exactly what a new bridge maps from the state in force;
/// - notifier mode: the batch is refused where the documented contract
///   refuses it (`NotifierModel`), and each space holds exactly the notified
///   mappings that lie in guest RAM and in the usable IOVA ranges.
///
/// Runs stay fast because guest tables can alias themselves (a table whose
/// entries point at itself describes 512^levels leaves): the product's walk
/// budget per sync is chosen small in most inputs, and before each operation
/// that walks, a bound on the entries its walks may read is computed from
/// the tables (`WalkCost`, capped by the walk budget); the program stops
/// when the operation's or the run's bound is over the harness's budget.
public enum SyncFuzzer {
    public static func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        let world = SyncWorld.shared
        world.reset()
        defer { world.reset() }
        let run = SyncRun(world: world)
        do {
            try run.execute(data)
            return .ok
        } catch {
            return .failed(error.message)
        }
    }

    /// Print each operation and its effect (the replay tool sets it from
    /// FUZZ_TRACE=1, to read what a crashing input does).
    nonisolated(unsafe) public static var trace = false

    /// The harness's walk bound (`SyncRun.afford`); the replay tool turns it
    /// off with FUZZ_NO_WALK_BUDGET=1, to time what an aliasing table costs
    /// the product's own walk.
    nonisolated(unsafe) public static var walkBudget = true

    /// Budgets, in "entries read" (a present entry counts `WalkCost.perPresentEntry`).
    public static let operationBudget = 300_000
    public static let runBudget = 1_500_000
}

/// The state of one run: the bridge, its backends, and the bookkeeping the
/// checks need.
final class SyncRun {
    let world: SyncWorld
    let logger = Logger(label: "fuzz-sync", factory: { _ in SwiftLogNoOpLogHandler() })
    var bridge: GuestIOMMU!
    var sids: [SourceID] = []
    var backends: [SourceID: CheckingBackend] = [:]
    var info = IOMMUInfo(pageSizes: 0x4020_1000, iovaRanges: nil, dmaAvailable: nil)
    var quota = 64
    var walkBudget = WalkBudget.defaultEntries
    /// Fail every `failurePeriod`-th backend call (0: never).
    var failurePeriod = 0
    var calls = 0
    var injected = 0
    var successfulMaps = 0
    var successfulUnmaps = 0
    /// The guest RAM in force: the only RAM a MAP may point into.
    var installedMemory: GuestRAM? { session.current.memory }
    var violation: String?
    var spent = 0
    /// Shared by the runs of a process, so its tables are allocated once.
    var cost: WalkCost { world.cost }
    /// The guest state in force and the one a loading session put aside,
    /// with what a notifier-mode VMM has notified, as documented.
    var session: SessionModel!

    init(world: SyncWorld) { self.world = world }

    func violate(_ message: String) {
        if violation == nil { violation = message }
    }

    /// Failure injection: nil, or the errno the next call fails with.
    func injectedFailure() -> Int32? {
        guard failurePeriod > 0 else { return nil }
        calls += 1
        guard calls % failurePeriod == 0 else { return nil }
        injected += 1
        let errnos: [Int32] = [12, 28, 14, 16, 22] // ENOMEM, ENOSPC, EFAULT, EBUSY, EINVAL
        return errnos[calls / failurePeriod % errnos.count]
    }

    // MARK: decoding

    static func caps(_ b0: UInt8, _ b1: UInt8) -> IOMMUCapabilities {
        var levels: Set<Int> = []
        if b0 & 0x04 != 0 { levels.insert(3) }
        if b0 & 0x08 != 0 { levels.insert(4) }
        if b0 & 0x10 != 0 { levels.insert(5) }
        if levels.isEmpty { levels = [4] }
        return IOMMUCapabilities.make(addressWidth: [48, 39, 57, 32][Int(b0 & 3)], levels: levels,
                                      largePages2M: b0 & 0x20 != 0, largePages1G: b0 & 0x40 != 0,
                                      passThrough: b0 & 0x80 != 0, deviceTLB: b1 & 1 != 0, snoopControl: b1 & 2 != 0,
                                      maxAddressMask: Int(b1 >> 2))
    }

    /// Capabilities from two bytes, or (b0 == 0xff) raw CAP and ECAP from
    /// the input, with caching mode forced on as the daemon requires.
    static func readCaps(_ input: inout FuzzReader) -> IOMMUCapabilities {
        let b0 = input.u8(or: 0x2c), b1 = input.u8(or: 0x48)
        if b0 == 0xff, let cap = input.u64(), let ecap = input.u64() {
            let raw = IOMMUCapabilities(cap: cap | 1 << 7, ecap: ecap)
            if !raw.supportedLevels.isEmpty { return raw }
        }
        return caps(b0, b1)
    }

    func execute(_ data: UnsafeRawBufferPointer) throws(Violation) {
        var input = FuzzReader(data)
        let caps = Self.readCaps(&input)
        let host = input.u8(or: 0)
        let state = input.u8(or: 0x06)
        let holeAt = input.u8(or: 0), holeSize = input.u8(or: 0)
        // The product's walk budget per sync: its default, its minimum, or between.
        walkBudget = [WalkBudget.defaultEntries, WalkBudget.minimumEntries, 4096, 16384, 65536, 262_144, 2048, 8192][Int(input.u8(or: 0) & 7)]

        switch host & 3 {
        case 0: info.iovaRanges = nil
        case 1: info.iovaRanges = [IOVARange(start: 0, last: 0xfedf_ffff), IOVARange(start: 0xfef0_0000, last: (1 << 48) - 1)]
        case 2: info.iovaRanges = [IOVARange(start: 0, last: (1 << 39) - 1)]
        default:
            // A hole of 1 to 256 pages at page `holeAt`.
            let lo = UInt64(holeAt) << 12, hi = (UInt64(holeAt) + 1 + UInt64(holeSize)) << 12
            info.iovaRanges = (lo > 0 ? [IOVARange(start: 0, last: lo - 1)] : []) + [IOVARange(start: hi, last: (1 << 57) - 1)]
        }
        quota = [1, 4, 16, 64, 256, 1024, 4096, 4096][Int((host >> 2) & 7)]
        failurePeriod = [0, 0, 0, 0, 2, 3, 5, 11][Int(host >> 5)]

        let count = 1 + Int((state >> 5) & 3)
        for _ in 0 ..< count {
            let sid = SourceID(rawValue: input.u16() ?? 0x18)
            if !sids.contains(sid) { sids.append(sid) }
        }
        let rootSelector = input.u8(or: 1)

        let source: TranslationSource = state & 1 != 0 ? .notifier : .tables
        do {
            bridge = try GuestIOMMU(caps: caps, walkBudget: walkBudget, logger: logger)
            try bridge.setCapabilities(caps, source: source)
        } catch {
            throw Violation("a bridge with caching mode was refused: \(error)")
        }
        // The state of a completed session (no checkpoint), or with bit 4 a
        // restarted daemon's, suspended until a VMM's READY.
        session = SessionModel(.init(caps: caps, source: source, memory: world.images[Int((state >> 3) & 1)]))
        _ = bridge.setMemory(session.current.memory)
        if state & 4 != 0 {
            session.current.rootTable = SyncWorld.pageGPA(rootSelector)
            _ = bridge.setRootTable(session.current.rootTable)
        }
        if state & 2 != 0 {
            session.current.translationEnabled = true
            _ = bridge.setTranslationEnabled(true)
        }
        if state & 0x10 != 0 {
            session.current.suspended = true
            bridge.suspendSync()
        }
        for sid in sids { try attach(sid) }
        try verify("setup")

        var step = 0
        while let op = input.u8() {
            step += 1
            let before = (successfulMaps, successfulUnmaps, injected)
            let goOn = try perform(op % 16, &input, step: step)
            if SyncFuzzer.trace {
                let held = sids.map { sid in backends[sid].map { "\(sid):\($0.mappings.count)" } ?? "\(sid):-" }
                let faults = bridge.spaces.values.reduce(0) { $0 + $1.faults.total }
                print("step \(step) op \(op % 16)\(goOn ? "" : " (over the walk budget: stop)"): +\(successfulMaps - before.0) maps, +\(successfulUnmaps - before.1) unmaps, +\(injected - before.2) refused; mappings \(held.joined(separator: " ")); faults \(faults); spent \(spent)")
            }
            guard goOn else { return }
        }
    }

    private func attach(_ sid: SourceID) throws(Violation) {
        let backend = CheckingBackend(run: self, info: info, injects: true, name: "\(sid)")
        let before = (successfulMaps, successfulUnmaps, injected)
        let report: SyncReport
        do {
            report = try bridge.attach(sid, backend: backend, mappingQuota: quota)
        } catch {
            throw Violation("attach \(sid) refused: \(error)")
        }
        backends[sid] = backend
        try checkReport(report, since: before, "attach \(sid)")
    }

    /// Runs one operation; false when the walk budget stops the program.
    private func perform(_ op: UInt8, _ input: inout FuzzReader, step: Int) throws(Violation) -> Bool {
        let before = (successfulMaps, successfulUnmaps, injected)
        let what = "step \(step)"
        switch op {
        case 1, 2:
            // A batch: raw descriptors (1), or composed from 4 bytes each (2).
            guard let n = input.u8() else { return true }
            var words: [(low: UInt64, high: UInt64)] = []
            for _ in 0 ... Int(n % 16) {
                if op == 1 {
                    guard let low = input.u64(), let high = input.u64() else { break }
                    words.append((low, high))
                } else {
                    guard let kind = input.u8(), let did = input.u8(), let addr = input.u8(), let am = input.u8() else { break }
                    words.append(composeDescriptor(kind: kind, did: did, addr: addr, am: am))
                }
            }
            guard session.current.source == .tables else { return true } // the daemon refuses INVALIDATE in notifier mode
            let waits = words.count(where: { $0.low & 0xf == 5 })
            guard afford(multiplier: waits + 1) else { return false }
            if SyncFuzzer.trace {
                for w in words { print("  descriptor \(hex(w.high)):\(hex(w.low)) \(InvalidationDescriptor.decode(low: w.low, high: w.high, caps: bridge.caps))") }
            }
            let result = bridge.process(words)
            try checkBatch(result, words, what)
            try checkReport(result.report, since: before, "\(what) batch")
        case 3:
            guard let selector = input.u8() else { return true }
            let target: SourceID? = selector & 0x80 != 0 || sids.isEmpty ? nil : sids[Int(selector) % sids.count]
            if let target, backends[target] == nil { return true }
            guard afford(multiplier: 2) else { return false }
            let quotaFaults = spacesQuotaFaults()
            let report: SyncReport
            do {
                report = try bridge.replay(target)
            } catch {
                throw Violation("\(what): replay of an attached device refused: \(error)")
            }
            try checkReport(report, since: before, "\(what) replay")
            try verify(what)
            try checkAgainstNewBridge(target, quotaFaultsBefore: quotaFaults, what)
            try checkNotifiedModel(what)
        case 4:
            guard let b = input.u8() else { return true }
            guard afford() else { return false }
            session.current.translationEnabled = b & 1 != 0
            try checkReport(bridge.setTranslationEnabled(b & 1 != 0), since: before, "\(what) translation")
            if b & 1 == 0 { session.current.notified.clear() }
        case 5:
            guard let mode = input.u8() else { return true }
            let root: UInt64?
            switch mode % 4 {
            case 0: root = nil
            case 3: guard let raw = input.u64() else { return true }; root = raw
            default: guard let page = input.u8() else { return true }; root = SyncWorld.pageGPA(page)
            }
            guard afford(root: root) else { return false }
            session.current.rootTable = root
            try checkReport(bridge.setRootTable(root), since: before, "\(what) root table")
        case 6:
            guard afford() else { return false }
            session.current.rootTable = nil
            session.current.translationEnabled = false
            try checkReport(bridge.reset(), since: before, "\(what) reset")
            session.current.notified.clear()
        case 7:
            guard let selector = input.u8() else { return true }
            let sid = sids.isEmpty || selector & 0x80 != 0 ? SourceID(rawValue: UInt16(selector) << 3) : sids[Int(selector) % sids.count]
            if let backend = backends[sid] {
                let report: SyncReport
                do { report = try bridge.detach(sid) } catch { throw Violation("\(what): detach of an attached device refused: \(error)") }
                backends[sid] = nil
                session.detach(sid)
                try checkReport(report, since: before, "\(what) detach")
                if failurePeriod == 0 {
                    try check(backend.mappings.isEmpty, "\(what): \(sid) still holds \(backend.mappings.count) mappings after detach")
                }
            } else {
                if !sids.contains(sid) { sids.append(sid) }
                guard afford(extra: sid) else { return false }
                try attach(sid)
            }
        case 8:
            let caps = Self.readCaps(&input)
            guard let flags = input.u8() else { return true }
            guard afford(caps: caps) else { return false }
            // As the daemon takes a HELLO: a loading session starts, with new
            // capabilities and no sync until READY (op 10) once the VMM has
            // re-sent its state.
            let source: TranslationSource = flags & 1 != 0 ? .notifier : .tables
            do {
                try bridge.beginLoading(caps, source: source)
            } catch {
                throw Violation("\(what): capabilities with caching mode refused: \(error)")
            }
            session.hello(caps, source: source)
            try checkReport(SyncReport(), since: before, "\(what) HELLO (loading syncs nothing)")
        case 9:
            guard let which = input.u8() else { return true }
            let memory: GuestRAM? = which % 3 == 0 ? nil : world.images[Int(which % 3) - 1]
            guard afford(memory: memory) else { return false }
            session.current.memory = memory
            try checkReport(bridge.setMemory(memory), since: before, "\(what) memory table")
        case 10:
            // The VMM connection's life: bit 0, a restarted daemon that
            // kept its devices (nothing syncs until a VMM's READY); else
            // bit 1, the VMM goes away (the daemon drops a loading session);
            // else READY.
            guard let b = input.u8() else { return true }
            if b & 1 != 0 {
                session.current.suspended = true
                bridge.suspendSync()
            } else if b & 2 != 0 {
                return try vmmGone(what, since: before)
            } else {
                guard afford() else { return false }
                let quotaFaults = spacesQuotaFaults()
                try checkReport(bridge.resumeSync(), since: before, "\(what) READY")
                session.ready()
                try verify(what)
                try checkAgainstNewBridge(nil, quotaFaultsBefore: quotaFaults, what)
                try checkNotifiedModel(what)
            }
        case 11:
            guard let n = input.u8() else { return true }
            var events: [NotifierEvent] = []
            for _ in 0 ... Int(n % 16) {
                guard let s = input.u8(), let page = input.u8(), let target = input.u8(), let shift = input.u8(),
                      let perm = input.u8(), let high = input.u8() else { break }
                let sid = sids.isEmpty ? SourceID(rawValue: UInt16(s)) : sids[Int(s) % sids.count]
                // As the daemon builds events from NOTIFY entries, which the
                // codec checked: size = address_mask + 1 (2^12 … 2^64, the
                // last wrapping to 0), iova and gpa aligned to it.
                let bits = 12 + Int(shift % 53)
                let mask: UInt64 = bits >= 64 ? .max : (1 << UInt64(bits)) - 1
                let iova = (UInt64(high) << 32 | UInt64(page) << 12) & ~mask
                let gpa = SyncWorld.pageGPA(target) & ~mask
                // The two permission bits of the byte, as the codec admits them.
                let permission = DMAPermission(rawValue: perm & DMAPermission.readWrite.rawValue)
                events.append(NotifierEvent(sourceID: sid, iova: iova, gpa: gpa, size: mask &+ 1, permission: permission))
            }
            guard session.current.source == .notifier else { return true } // the daemon refuses NOTIFY in table mode
            guard session.current.translationEnabled else { return true } // and while translation is disabled
            if SyncFuzzer.trace {
                for e in events { print("  notify \(e.sourceID) iova \(hex(e.iova)) gpa \(hex(e.gpa)) size \(hex(e.size)) perm \(e.permission.rawValue)") }
            }
            let result = bridge.notify(events)
            try checkReport(result.report, since: before, "\(what) notify")
            let refused = session.current.notified.apply(events, attached: Set(backends.keys))
            try check(result.rejected?.index == refused,
                      "\(what): notify batch refused at \(String(describing: result.rejected?.index)) (\(result.rejected?.reason ?? "")), the model refuses \(String(describing: refused))")
            try verify(what)
            try checkNotifiedModel(what)
        case 12:
            // A composed entry: page, word index, target page (0xff: none), low 16 bits, top byte.
            guard let page = input.u8(), let index = input.u16(), let target = input.u8(),
                  let low = input.u16(), let top = input.u8() else { return true }
            let value = (target == 0xff ? 0 : SyncWorld.pageGPA(target)) | UInt64(low) | UInt64(top) << 56
            world.poke(page: page, index: Int(index & 511), words: [value])
            return true
        default:
            // Raw words into one page: page, word index, count, words.
            guard let page = input.u8(), let index = input.u16(), let n = input.u8() else { return true }
            var words: [UInt64] = []
            for _ in 0 ... Int(n % 32) {
                guard let word = input.u64() else { break }
                words.append(word)
            }
            world.poke(page: page, index: Int(index & 511), words: words)
            return true
        }
        try verify(what)
        return true
    }

    /// The VMM went away. Before its READY the daemon abandons the loading
    /// session (`Daemon.dropVMM`): the last completed session's state is in
    /// force again, and if it was live every device is synced against it.
    /// Otherwise the bridge has no session to abandon and nothing changes.
    private func vmmGone(_ what: String, since before: (Int, Int, Int)) throws(Violation) -> Bool {
        guard let restored = session.checkpoint else {
            try checkReport(bridge.abandonLoading(), since: before, "\(what) VMM gone, no session loading")
            try check(successfulMaps == before.0 && successfulUnmaps == before.1,
                      "\(what): the VMM went away with no session loading, and the kernel was called")
            try verify(what)
            return true
        }
        guard afford(caps: restored.caps, root: restored.rootTable, memory: restored.memory, source: restored.source) else { return false }
        let quotaFaults = spacesQuotaFaults()
        // Before the call: the backend checks each MAP against the RAM in force.
        _ = session.abandon()
        try checkReport(bridge.abandonLoading(), since: before, "\(what) VMM gone while loading")
        try verify(what)
        try checkAgainstNewBridge(nil, quotaFaultsBefore: quotaFaults, what)
        try checkNotifiedModel(what)
        return true
    }

    /// Descriptors a guest driver might queue, from 4 bytes; some invalid.
    func composeDescriptor(kind: UInt8, did: UInt8, addr: UInt8, am: UInt8) -> (low: UInt64, high: UInt64) {
        let domain = UInt16(did)
        let sid = sids.isEmpty ? SourceID(rawValue: UInt16(addr)) : sids[Int(addr) % sids.count]
        let descriptor: InvalidationDescriptor
        switch kind % 12 {
        case 0: descriptor = .contextCache(.global)
        case 1: descriptor = .contextCache(.domain(domain))
        case 2: descriptor = .contextCache(.device(domainID: domain, sourceID: sid, functionMask: am & 3))
        case 3: descriptor = .iotlb(.global, drainReads: true, drainWrites: true)
        case 4: descriptor = .iotlb(.domain(domain), drainReads: false, drainWrites: true)
        case 5:
            let address = UInt64(addr) << (am & 0x80 != 0 ? 21 : 12)
            descriptor = .iotlb(.pages(domainID: domain, address: address, addressMask: am & 0x3f, invalidationHint: am & 0x40 != 0),
                                drainReads: false, drainWrites: false)
        case 6: descriptor = .deviceTLB(sourceID: sid, address: UInt64(addr) << 12, sizeBit: am & 1 != 0)
        case 7: descriptor = .interruptEntryCache(global: am & 1 == 0, index: UInt16(addr), indexMask: am >> 3)
        case 8: return (UInt64(6 + am % 10) | UInt64(did) << 16, UInt64(addr)) // an unknown type, or reserved bits
        default: descriptor = .wait(statusWrite: true, interrupt: false, fence: true, statusData: UInt32(addr), statusAddress: 0)
        }
        return descriptor.encoded
    }

    // MARK: the walk budget

    /// Whether the operation's walks fit the budgets; charges them to the run.
    /// The bound covers, for every attached device (and `extra`), a full
    /// walk from its cached context and from a fresh context lookup under
    /// the state the operation will leave (`caps`, `root`, `memory`),
    /// `multiplier` times (a batch syncs at each wait).
    func afford(multiplier: Int = 1, caps: IOMMUCapabilities? = nil, root: UInt64?? = nil,
                memory: GuestRAM?? = nil, source: TranslationSource? = nil, extra: SourceID? = nil) -> Bool {
        guard SyncFuzzer.walkBudget else { return true }
        let caps = caps ?? session.current.caps
        let root = root ?? session.current.rootTable
        let memory = memory ?? session.current.memory
        guard let memory, (source ?? session.current.source) == .tables else { return true }
        var total = 0
        var targets = Array(backends.keys)
        if let extra { targets.append(extra) }
        cost.begin(memory: memory, caps: caps)
        // A sync reads at most the product's walk budget of entries.
        let perSync = walkBudget.multipliedReportingOverflow(by: 8).overflow ? Int.max : walkBudget * 8
        for sid in targets {
            if let space = bridge.spaces[sid], case let .translated(_, table, levels) = space.context {
                total += min(cost.walk(table: table, levels: levels), perSync)
            }
            if let root, case let .translated(_, table, levels) = ContextLookup.lookup(sourceID: sid, rootTable: root, memory: memory, caps: caps) {
                total += min(cost.walk(table: table, levels: levels), perSync)
            }
            if total > SyncFuzzer.operationBudget { return false }
        }
        total = total.multipliedReportingOverflow(by: multiplier).overflow ? .max : total * multiplier
        guard total <= SyncFuzzer.operationBudget, spent + total <= SyncFuzzer.runBudget else { return false }
        spent += total
        return true
    }

    // MARK: checks

    /// Quota and walk-budget faults per space: a sync that met either is
    /// not compared with a new bridge (what it left beyond the cut is kept
    /// on purpose).
    private func spacesQuotaFaults() -> [SourceID: UInt64] {
        bridge.spaces.mapValues { ($0.faults.counts[.quotaExceeded] ?? 0) + ($0.faults.counts[.walkBudgetExceeded] ?? 0) }
    }

    /// The report counts what the backends accepted during the operation.
    private func checkReport(_ report: SyncReport, since before: (Int, Int, Int), _ what: String) throws(Violation) {
        if let violation { throw Violation("\(what): \(violation)") }
        try check(report.maps == successfulMaps - before.0,
                  "\(what): report says \(report.maps) maps, the backends accepted \(successfulMaps - before.0)")
        try check(report.unmaps == successfulUnmaps - before.1,
                  "\(what): report says \(report.unmaps) unmaps, the backends accepted \(successfulUnmaps - before.1)")
        try check(report.failures.count >= injected - before.2,
                  "\(what): \(injected - before.2) calls failed, the report lists \(report.failures.count)")
        if failurePeriod == 0 {
            try check(report.failures.isEmpty, "\(what): failures without any refused call: \(report.failures)")
        }
    }

    /// A batch stops at the first descriptor the decoder refuses.
    private func checkBatch(_ result: BatchResult, _ words: [(low: UInt64, high: UInt64)], _ what: String) throws(Violation) {
        var waits = 0
        var rejected: Int?
        for (i, w) in words.enumerated() {
            switch InvalidationDescriptor.decode(low: w.low, high: w.high, caps: bridge.caps) {
            case .failure: rejected = i
            case let .success(d): if case .wait = d { waits += 1 }
            }
            if rejected != nil { break }
        }
        try check(result.rejected?.index == rejected, "\(what): batch rejected at \(String(describing: result.rejected?.index)), the decoder refuses index \(String(describing: rejected))")
        try check(result.waits == waits, "\(what): \(result.waits) waits reported, \(waits) before the first invalid descriptor")
    }

    /// The invariants that hold after every operation.
    func verify(_ what: String) throws(Violation) {
        if let violation { throw Violation("\(what): \(violation)") }
        try check(Set(bridge.spaces.keys) == Set(backends.keys), "\(what): the bridge's devices \(bridge.spaces.keys.sorted()) are not those attached")
        try checkStateInForce(what)
        let clean = failurePeriod == 0
        let state = session.current
        let tableMode = state.source == .tables
        // While suspended, state changes are recorded and not synced yet.
        let settled = !state.suspended
        // Translation disabled maps nothing in either mode (PROTOCOL.md §1.6).
        let blocked = settled && (state.memory == nil || !state.translationEnabled || (tableMode && state.rootTable == nil))
        for (sid, backend) in backends {
            let shadow = bridge.spaces[sid]!.shadow.entries
            let held = backend.mappings
            var same = shadow.count == held.count
            if same {
                for (s, h) in zip(shadow, held) where s.iova != h.iova || s.size != h.size || s.hostAddress != h.hostAddress || s.permission != h.permission {
                    same = false
                    break
                }
            }
            if !same {
                throw Violation("\(what): the shadow of \(sid) (\(shadow.count) entries: \(describe(shadow.map { ($0.iova, $0.size, $0.hostAddress) }))) differs from what its backend holds (\(held.count): \(describe(held.map { ($0.iova, $0.size, $0.hostAddress) })))")
            }
            guard clean else { continue }
            if blocked {
                try check(held.isEmpty, "\(what): \(sid) holds \(held.count) mappings while nothing may be mapped (memory \(world.describe(state.memory)), translation \(state.translationEnabled), root \(String(describing: state.rootTable)))")
            }
            if settled, let memory = state.memory {
                for m in held where memory.gpa(hostAddress: m.hostAddress, size: m.size) == nil {
                    throw Violation("\(what): \(sid) holds iova \(hex(m.iova)) → host \(hex(m.hostAddress)) size \(hex(m.size)), outside the guest RAM in force")
                }
            }
        }
    }

    private func describe(_ entries: [(UInt64, UInt64, UInt64)]) -> String {
        entries.prefix(6).map { "\(hex($0.0))+\(hex($0.1))→\(hex($0.2))" }.joined(separator: " ") + (entries.count > 6 ? " …" : "")
    }

    /// After a full sync (a replay, READY, an abandoned session), a space
    /// holds exactly what a new bridge maps from the state in force (when
    /// nothing was refused and no quota was reached).
    private func checkAgainstNewBridge(_ target: SourceID?, quotaFaultsBefore: [SourceID: UInt64], _ what: String) throws(Violation) {
        let state = session.current
        guard failurePeriod == 0, state.source == .tables, target != nil || !state.suspended else { return }
        let after = spacesQuotaFaults()
        for sid in target.map({ [$0] }) ?? Array(backends.keys) {
            guard after[sid] == quotaFaultsBefore[sid] else { continue }
            let probe: GuestIOMMU
            let backend = CheckingBackend(run: self, info: info, injects: false, name: "reference \(sid)")
            do {
                probe = try GuestIOMMU(caps: state.caps, walkBudget: walkBudget, logger: logger)
                _ = probe.setMemory(state.memory)
                _ = probe.setRootTable(state.rootTable)
                _ = probe.setTranslationEnabled(state.translationEnabled)
                try probe.attach(sid, backend: backend, mappingQuota: quota)
            } catch {
                throw Violation("\(what): reference bridge refused: \(error)")
            }
            if let violation { throw Violation("\(what): reference bridge: \(violation)") }
            let reference = probe.spaces[sid]!
            guard (reference.faults.counts[.quotaExceeded] ?? 0) == 0, (reference.faults.counts[.walkBudgetExceeded] ?? 0) == 0 else { continue }
            let mine = bridge.spaces[sid]!.shadow.entries
            let theirs = reference.shadow.entries
            try check(mine == theirs,
                      "\(what): after the full sync \(sid) holds \(mine.count) mappings (\(describe(mine.map { ($0.iova, $0.size, $0.hostAddress) }))); a new bridge maps \(theirs.count) (\(describe(theirs.map { ($0.iova, $0.size, $0.hostAddress) })))")
        }
    }
}
