import VFIO
import VTd

/// What an address space should hold, yielded in IOVA order for the merge in
/// `AddressSpace.reconcile`: the guest's walked tables, an identity map of
/// RAM (pass-through), or what a notifier-mode VMM sent.
protocol DesiredMappings {
    /// Starts yielding the mappings that intersect [from, to).
    mutating func start(from: UInt64, to: UInt64)
    mutating func next() -> ShadowEntry?
}

/// Turns a guest leaf into the mapping to make, or a fault. The guest is
/// untrusted: the leaf must lie wholly in one RAM region, and its IOVA in the
/// host's usable ranges.
@inline(__always)
func planMapping(_ leaf: SecondLevelLeaf, memory: GuestRAM, limits: IOMMUInfo, faults: inout [TranslationFault]) -> ShadowEntry? {
    let size = leaf.size
    if let host = memory.hostAddress(gpa: leaf.gpa, size: size), limits.isUsable(iova: leaf.iova, size: size) {
        return ShadowEntry(iova: leaf.iova, size: size, gpa: leaf.gpa, hostAddress: host,
                           permission: DMAPermission(rawValue: (leaf.read ? 1 : 0) | (leaf.write ? 2 : 0)))
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
struct WalkedMappings: DesiredMappings {
    let walker: SecondLevelWalker<GuestRAM>
    let table: UInt64
    let levels: Int
    let limits: IOMMUInfo
    var steps: SecondLevelWalker<GuestRAM>.Steps?
    var faults: [TranslationFault] = []

    init(walker: SecondLevelWalker<GuestRAM>, table: UInt64, levels: Int, limits: IOMMUInfo) {
        self.walker = walker
        self.table = table
        self.levels = levels
        self.limits = limits
    }

    mutating func start(from: UInt64, to: UInt64) {
        steps = walker.steps(table: table, levels: levels, start: from, end: to)
    }

    @inline(__always)
    mutating func next() -> ShadowEntry? {
        while let step = steps!.next() {
            switch step {
            case let .leaf(leaf):
                if let entry = planMapping(leaf, memory: walker.memory, limits: limits, faults: &faults) { return entry }
            case .fault:
                faults.append(steps!.fault!)
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
                pending.append(ShadowEntry(iova: lo, size: hi - lo, gpa: lo, hostAddress: region.hostAddress + (lo - region.gpa),
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
    let notified: ShadowMap
    let memory: GuestRAM
    let limits: IOMMUInfo
    var cursor = ShadowMap.Cursor.empty
    var end: UInt64 = 0
    var faults: [TranslationFault] = []

    init(notified: ShadowMap, memory: GuestRAM, limits: IOMMUInfo) {
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
                                       read: n.permission.contains(.read), write: n.permission.contains(.write))
            if let entry = planMapping(leaf, memory: memory, limits: limits, faults: &faults) { return entry }
        }
        return nil
    }
}
