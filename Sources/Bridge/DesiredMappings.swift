import VFIO
import VTd

/// What an address space should hold, yielded in IOVA order for the merge in
/// `AddressSpace.reconcile`: the guest's walked tables, an identity map of
/// RAM (pass-through), or what a notifier-mode VMM sent.
protocol DesiredMappings {
    /// Starts yielding the mappings that intersect [from, to).
    mutating func start(from: UInt64, to: UInt64)
    mutating func next() -> ShadowEntry?
    /// Moves past what the shadow, read from `cursor`, already holds exactly,
    /// up to `limit`, advancing the cursor alike; a source may do nothing.
    /// Everything it skips must be what `next()` would have yielded and the
    /// merge would have matched.
    mutating func skipMatching(_ cursor: inout ShadowMap.Cursor, until limit: UInt64)
    /// Set once `next()` has returned nil when the source gave up before the
    /// end of its range (the walk budget ran out): the first IOVA it did not
    /// examine. What the guest wants from there on is unknown, not empty.
    var stoppedAt: UInt64? { get }
    /// Whether a shadow entry beyond `stoppedAt` may stay although the
    /// source did not examine it: only if the kernel mapping still lies in
    /// guest RAM as installed now.
    func mayKeepUnexamined(_ entry: ShadowEntry) -> Bool
}

extension DesiredMappings {
    @inline(__always)
    mutating func skipMatching(_ cursor: inout ShadowMap.Cursor, until limit: UInt64) {}
    var stoppedAt: UInt64? { nil }
    func mayKeepUnexamined(_ entry: ShadowEntry) -> Bool { true }
}

/// The faults one sync finds, in bounded memory: a hostile guest can make
/// every leaf of a walk a fault (millions per sync, up to the walk budget).
/// The first `detailedLimit` are kept whole (more than `FaultLog` keeps);
/// after that only a count per reason is kept, and the walk is told to stop
/// building their text. The walk-budget fault, one per sync at most, is
/// always kept whole: its text says where the walk stopped.
struct SyncFaults {
    static let detailedLimit = 64
    private(set) var detailed: [TranslationFault] = []
    /// Faults past the first `detailedLimit`, by reason.
    private(set) var counted: [FaultReason: Int] = [:]

    var wantsDetail: Bool { detailed.count < Self.detailedLimit }
    var isEmpty: Bool { detailed.isEmpty && counted.isEmpty }

    mutating func append(_ fault: TranslationFault) {
        if wantsDetail || fault.reason == .walkBudgetExceeded {
            detailed.append(fault)
        } else {
            counted[fault.reason, default: 0] += 1
        }
    }

    mutating func count(_ reason: FaultReason) {
        counted[reason, default: 0] += 1
    }
}

/// Turns a guest leaf into the mapping to make, or a fault. The guest is
/// untrusted: the leaf must lie wholly in one RAM region, and its IOVA in the
/// host's usable ranges.
@inline(__always)
func planMapping(_ leaf: SecondLevelLeaf, memory: GuestRAM, limits: IOMMUInfo, faults: inout SyncFaults) -> ShadowEntry? {
    let size = leaf.size
    if let host = memory.hostAddress(gpa: leaf.gpa, size: size), limits.isUsable(iova: leaf.iova, size: size) {
        return ShadowEntry(iova: leaf.iova, size: size, hostAddress: host,
                           permission: leaf.permission)
    }
    if !faults.wantsDetail {
        faults.count(memory.hostAddress(gpa: leaf.gpa, size: size) == nil ? .leafOutsideRAM : .iovaNotUsable)
        return nil
    }
    if memory.hostAddress(gpa: leaf.gpa, size: size) == nil {
        let detail = memory.regionIndex(containing: leaf.gpa) == nil
            ? "gpa 0x\(String(leaf.gpa, radix: 16)) is not guest RAM"
            : "gpa 0x\(String(leaf.gpa, radix: 16)) + 0x\(String(size, radix: 16)) runs past the end of its RAM region"
        faults.append(TranslationFault(reason: .leafOutsideRAM, iova: leaf.iova, value: leaf.gpa, detail: detail))
    } else {
        faults.append(TranslationFault(reason: .iovaNotUsable, iova: leaf.iova, value: leaf.gpa,
                                       detail: "the host IOMMU cannot map iova 0x\(String(leaf.iova, radix: 16)) + 0x\(String(size, radix: 16)) (reserved or beyond its address width)"))
    }
    return nil
}

/// The guest's second-level tables, walked.
///
/// One value serves one sync (one `reconcile`), however many passes it
/// takes: the walk budget (`walker.budget` entries) is shared by all of them,
/// each pass starting with what the previous one left.
struct WalkedMappings: DesiredMappings {
    let walker: SecondLevelWalker<GuestRAM>
    let table: UInt64
    let levels: Int
    let limits: IOMMUInfo
    var steps: SecondLevelWalker<GuestRAM>.Steps?
    var faults = SyncFaults()
    /// Entries the sync may still read, as of the start of the current pass.
    var budget: Int
    /// The RAM region of the last leaf the fast path resolved: consecutive
    /// leaves almost always land in the same one.
    var region = RegionCache(gpa: 1, lastPageOffset: 0, hostAddress: 0)

    struct RegionCache {
        var gpa: UInt64
        /// The offset of the region's last 4 KiB page.
        var lastPageOffset: UInt64
        var hostAddress: UInt64
    }

    init(walker: SecondLevelWalker<GuestRAM>, table: UInt64, levels: Int, limits: IOMMUInfo) {
        self.walker = walker
        self.table = table
        self.levels = levels
        self.limits = limits
        budget = walker.budget
    }

    mutating func start(from: UInt64, to: UInt64) {
        if let previous = steps { budget = previous.budgetLeft }
        steps = walker.steps(table: table, levels: levels, start: from, end: to, budget: budget, budgetLimit: walker.budget)
    }

    var stoppedAt: UInt64? { steps?.stoppedAt }

    /// An entry made against a previous memory table (SET_MEM_TABLE moved
    /// or dropped its region) points the kernel at memory that is not the
    /// guest RAM installed now: it may not stay, examined or not.
    func mayKeepUnexamined(_ entry: ShadowEntry) -> Bool {
        walker.memory.gpa(hostAddress: entry.hostAddress, size: entry.size) != nil
    }

    /// The replay's fast path. On a replay of unchanged tables nearly every
    /// leaf equals the shadow entry under the cursor, and a `next()` per leaf
    /// (a walk step, a RAM check, an IOVA check, a 24-byte result through
    /// memory) cost ~25 ns. Here the walk stands inside a level-1 table, so
    /// its entries are read in one loop and compared with the shadow's chunk
    /// in place. It applies the same rules as `next()` and the merge: a
    /// present entry with reserved bits, a leaf outside RAM, or anything that
    /// does not match stops it, and the general path takes over there.
    @inline(__always)
    mutating func skipMatching(_ cursor: inout ShadowMap.Cursor, until limit: UInt64) {
        guard let run = steps!.level1Run, run.index < 511 else { return }
        let stop = min(limit, run.end)
        guard stop > run.iova, stop - run.iova >= 4096 else { return }
        // Up to the table's second-last entry: moving past the last one
        // needs the climb that `next()` does. And no further than the walk
        // budget: the entries skipped here are read, and count; `next()`
        // reports the fault where the budget runs out.
        let count = Int(min((stop - run.iova) >> 12, UInt64(511 - run.index), UInt64(max(run.budget, 0))))
        guard count > 0 else { return }
        guard limits.isUsable(iova: run.iova, size: UInt64(count) << 12) else { return }
        let memory = walker.memory
        var region = self.region
        var k = 0
        var halted = false
        while !halted && k < count {
            let before = k
            cursor.consume { have, isLast in
                var j = 0
                while k < count {
                    let raw = UInt64(littleEndian: run.table[run.index &+ k])
                    let iova = run.iova &+ (UInt64(k) << 12)
                    if raw & 3 != 0 {
                        if raw & run.reservedMask != 0 { halted = true; return j }
                        let allowed = raw & 3 & run.rights
                        if allowed != 0 {
                            guard j < have.count else {
                                if isLast { halted = true }
                                return j
                            }
                            let gpa = raw & run.addressMask
                            var offset = gpa &- region.gpa
                            if gpa < region.gpa || offset > region.lastPageOffset {
                                guard let i = memory.regionIndex(containing: gpa) else { halted = true; return j }
                                let r = memory.regions[i]
                                guard r.size - (gpa - r.gpa) >= 4096 else { halted = true; return j }
                                region = RegionCache(gpa: r.gpa, lastPageOffset: r.size - 4096, hostAddress: r.hostAddress)
                                offset = gpa - r.gpa
                            }
                            let e = have[j]
                            guard e.iova == iova, e.sizeAndPermission == 4096 | allowed,
                                  e.hostAddress == region.hostAddress &+ offset else { halted = true; return j }
                            j &+= 1
                            k &+= 1
                            continue
                        }
                    }
                    // No leaf here: the shadow must hold nothing in this page.
                    if j < have.count {
                        guard have[j].iova >= iova &+ 4096 else { halted = true; return j }
                    } else if !isLast {
                        return j
                    }
                    k &+= 1
                }
                return j
            }
            if k == before { break }
        }
        self.region = region
        if k > 0 { steps!.skipLevel1(k) }
    }

    @inline(__always)
    mutating func next() -> ShadowEntry? {
        while let step = steps!.next() {
            switch step {
            case let .leaf(leaf):
                if let entry = planMapping(leaf, memory: walker.memory, limits: limits, faults: &faults) { return entry }
            case .fault:
                faults.append(steps!.fault!)
                if !faults.wantsDetail { steps!.detailedFaults = false }
            }
        }
        return nil
    }
}

/// Pass-through: IOVA == GPA over all of guest RAM, cut around the host's
/// reserved IOVA ranges.
struct IdentityMappings: DesiredMappings {
    let memory: GuestRAM
    let limits: IOMMUInfo
    var pending: [ShadowEntry] = []
    var index = 0

    init(memory: GuestRAM, limits: IOMMUInfo) {
        self.memory = memory
        self.limits = limits
    }

    mutating func start(from: UInt64, to: UInt64) {
        pending.removeAll()
        index = 0
        for region in memory.regions where region.end > from && region.gpa < to {
            var pieces: [(UInt64, UInt64)] = [(region.gpa, region.end)]
            if let ranges = limits.iovaRanges {
                pieces = ranges.sorted { $0.start < $1.start }.compactMap { r in
                    let lo = max(region.gpa, r.start)
                    let hi = min(region.end, r.last == .max ? .max : r.last + 1) & ~0xfff
                    return lo < hi ? (lo, hi) : nil
                }
            }
            for (lo, hi) in pieces {
                pending.append(ShadowEntry(iova: lo, size: hi - lo, hostAddress: region.hostAddress + (lo - region.gpa),
                                           permission: .readWrite))
            }
        }
    }

    mutating func next() -> ShadowEntry? {
        guard index < pending.count else { return nil }
        index += 1
        return pending[index - 1]
    }
}

/// Notifier mode: what the VMM notified, with host addresses resolved now.
struct NotifiedMappings: DesiredMappings {
    let notified: NotifiedMap
    let memory: GuestRAM
    let limits: IOMMUInfo
    var cursor = NotifiedMap.Cursor.empty
    var end: UInt64 = 0
    var faults = SyncFaults()

    init(notified: NotifiedMap, memory: GuestRAM, limits: IOMMUInfo) {
        self.notified = notified
        self.memory = memory
        self.limits = limits
    }

    mutating func start(from: UInt64, to: UInt64) {
        cursor = notified.cursor(endingAfter: from)
        end = to
    }

    mutating func next() -> ShadowEntry? {
        while let n = cursor.current, n.iova < end {
            cursor.advance()
            let leaf = SecondLevelLeaf(iova: n.iova, gpa: n.gpa, sizeShift: UInt8(n.size.trailingZeroBitCount),
                                       permission: n.permission)
            if let entry = planMapping(leaf, memory: memory, limits: limits, faults: &faults) { return entry }
        }
        return nil
    }
}
