/// How many paging entries one sync may read: the walk budget.
///
/// The walk cannot loop (every step moves the IOVA forward), but a table
/// that points at itself or at a higher-level table is walked as the
/// aliasing it is, so a full-range walk of such tables reads up to 512^levels
/// entries (512^4 ≈ 6.9·10^10 under one aliased PML4 entry). The budget
/// caps that: once it is spent the walk stops with one
/// `walkBudgetExceeded` fault and reports where (`Steps.stoppedAt`).
public enum WalkBudget {
    /// The default: four times what a legitimate 4 GiB space of 4 KiB pages
    /// reads (~1.05M entries: 1M leaves plus their tables).
    public static let defaultEntries = 4_194_304
    /// The smallest budget the daemon's config accepts: a full walk of a
    /// 5-level space with one table per level reads 5 × 512 entries, and a
    /// budget that cannot finish a small legitimate space is a mistake.
    public static let minimumEntries = 65_536
}

/// Walks second-level page tables over an IOVA range, in IOVA order.
///
/// The walk is iterative with one cursor per level, so its depth is the table
/// depth (3 to 5) and nothing a guest writes can make it recurse or loop: every
/// step moves the IOVA cursor forward. A table that points at itself or at a
/// higher level is therefore walked as the aliasing the hardware would also
/// see, bounded by the range like any other table, and by the walk budget
/// (`WalkBudget`): the number of entries a walk may read.
///
/// Access rights are the AND of R and W along the path (spec 3.6.1). A present
/// entry with a reserved bit set is a fault (spec 7.1.3 reason 0x0C): it is
/// reported and nothing below it is mapped.
public struct SecondLevelWalker<Memory: GuestMemoryReader> {
    public let memory: Memory
    public let caps: IOMMUCapabilities
    /// Most paging entries one walk (`steps`, `walk`) may read.
    public let budget: Int
    // Reserved masks, precomputed per (level, leaf) so the hot loop does no work
    // beyond one AND per entry.
    @usableFromInline let tableMasks: [UInt64]
    @usableFromInline let leafMasks: [UInt64]

    public init(memory: Memory, caps: IOMMUCapabilities, budget: Int = WalkBudget.defaultEntries) {
        precondition(budget >= 1, "a walk budget is at least one entry")
        self.memory = memory
        self.caps = caps
        self.budget = budget
        tableMasks = (0...5).map { SecondLevelEntry.reservedMask(level: max($0, 1), leaf: false, caps: caps) }
        var leaf = (0...5).map { SecondLevelEntry.reservedMask(level: max($0, 1), leaf: true, caps: caps) }
        // A PS bit at a level without large-page support is a reserved bit
        // (spec 9.8): treat such a "leaf" as reserved at every bit.
        if !caps.supports2MPages { leaf[2] = ~0 }
        if !caps.supports1GPages { leaf[3] = ~0 }
        leafMasks = leaf
    }

    /// The first IOVA past what a `levels`-deep table can translate.
    public static func addressLimit(levels: Int) -> UInt64 {
        let bits = vtdLevelShift(levels) + 9
        return bits >= 64 ? UInt64.max : UInt64(1) << bits
    }

    /// Visits every leaf that intersects [start, end), in IOVA order, and every
    /// fault met on the way. Leaves are reported whole, so the first and last
    /// may extend outside the range. Returns the first IOVA not examined when
    /// the walk budget ran out (after a `walkBudgetExceeded` fault), else nil.
    @inlinable @discardableResult
    public func walk(table: UInt64, levels: Int, start: UInt64, end: UInt64,
                     leaf onLeaf: (SecondLevelLeaf) -> Void,
                     fault onFault: (TranslationFault) -> Void) -> UInt64? {
        var steps = self.steps(table: table, levels: levels, start: start, end: end)
        while let step = steps.next() {
            switch step {
            case let .leaf(leaf): onLeaf(leaf)
            case .fault: onFault(steps.fault!)
            }
        }
        return steps.stoppedAt
    }

    /// The same walk, pulled one step at a time: a caller that merges it with
    /// another ordered stream (the shadow) runs as one loop, with no closure
    /// call per leaf.
    ///
    /// `budget` is the number of entries this walk may still read (default:
    /// the walker's `budget`); a caller that walks one sync in several
    /// passes hands each pass what the previous one left (`Steps.budgetLeft`)
    /// and says how many the sync had (`budgetLimit`, for the fault's text).
    @inlinable
    public func steps(table: UInt64, levels: Int, start: UInt64, end: UInt64,
                      budget: Int? = nil, budgetLimit: Int? = nil) -> Steps {
        precondition((3...5).contains(levels))
        let left = max(0, budget ?? self.budget)
        return Steps(walker: self, table: table, levels: levels, start: start, end: min(end, Self.addressLimit(levels: levels)),
                     budget: left, budgetLimit: budgetLimit ?? self.budget)
    }

    /// A step is plain data (no String inside), so returning one per leaf
    /// costs no reference counting; a fault's details wait in `Steps.fault`.
    public enum Step {
        case leaf(SecondLevelLeaf)
        /// A fault; read it from `Steps.fault` before the next step.
        case fault
    }

    /// The walk's state: one table pointer and one set of inherited rights
    /// per level, inline.
    public struct Steps {
        @usableFromInline let memory: Memory
        @usableFromInline let levels: Int
        @usableFromInline let end: UInt64
        @usableFromInline let addressMask: UInt64
        @usableFromInline let tableMasks: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        @usableFromInline let leafMasks: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        // Index by level (1...5); rights[levels + 1] = 3 ("all allowed").
        @usableFromInline var tables: (UInt, UInt, UInt, UInt, UInt, UInt) = (0, 0, 0, 0, 0, 0)
        @usableFromInline var rights: (UInt, UInt, UInt, UInt, UInt, UInt, UInt) = (0, 0, 0, 0, 0, 0, 3)
        @usableFromInline var level: Int
        @usableFromInline var iova: UInt64
        @usableFromInline var done: Bool
        @usableFromInline var pendingFault: TranslationFault?
        /// Entries this walk may still read.
        @usableFromInline var remaining: Int
        /// The budget of the whole sync this walk is part of (for the fault's text).
        @usableFromInline let budgetLimit: Int
        @usableFromInline var stopIOVA: UInt64?
        /// The fault of the last `.fault` step.
        public var fault: TranslationFault?
        /// Whether faults carry a text `detail`. A caller that has kept
        /// enough faults of this walk in full and only counts the rest turns
        /// it off, so that a table full of bad entries costs no string each.
        public var detailedFaults = true

        /// Entries this walk may still read; a later pass of the same sync
        /// starts with this.
        @inlinable public var budgetLeft: Int { remaining }

        /// Where the walk stopped because its budget ran out: the first IOVA
        /// it did not examine. Every leaf below it was reported; nothing is
        /// known about [stoppedAt, end). Nil while the walk runs or when it
        /// covered its whole range.
        @inlinable public var stoppedAt: UInt64? { stopIOVA }

        @inlinable
        init(walker: SecondLevelWalker, table: UInt64, levels: Int, start: UInt64, end: UInt64, budget: Int, budgetLimit: Int) {
            memory = walker.memory
            remaining = budget
            self.budgetLimit = budgetLimit
            stopIOVA = nil
            self.levels = levels
            self.end = end
            addressMask = walker.caps.addressMask & ~0xfff
            let t = walker.tableMasks, l = walker.leafMasks
            tableMasks = (t[0], t[1], t[2], t[3], t[4], t[5])
            leafMasks = (l[0], l[1], l[2], l[3], l[4], l[5])
            level = levels
            iova = start & ~0xfff
            done = start >= end
            pendingFault = nil
            fault = nil
            if !done {
                if let top = walker.memory.tablePage(at: table) {
                    Self.set(&tables, levels, UInt(bitPattern: top))
                    Self.set(&rights, levels + 1, 3)
                } else {
                    pendingFault = TranslationFault(reason: .tableOutsideRAM, iova: start, level: levels, value: table,
                                                    detail: "top-level table is not a page of guest RAM")
                    done = true
                }
            }
        }

        @inlinable @inline(__always)
        static func get<T>(_ tuple: T, _ i: Int) -> UInt {
            withUnsafeBytes(of: tuple) { $0.load(fromByteOffset: i * MemoryLayout<UInt>.stride, as: UInt.self) }
        }

        @inlinable @inline(__always)
        static func set<T>(_ tuple: inout T, _ i: Int, _ value: UInt) {
            withUnsafeMutableBytes(of: &tuple) { $0.storeBytes(of: value, toByteOffset: i * MemoryLayout<UInt>.stride, as: UInt.self) }
        }

        @inlinable @inline(__always)
        static func mask(_ tuple: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64), _ i: Int) -> UInt64 {
            withUnsafeBytes(of: tuple) { $0.load(fromByteOffset: i * 8, as: UInt64.self) }
        }

        /// Where the walk stands when it is inside a level-1 table (4 KiB
        /// leaves) with nothing pending: the table, the index of the next
        /// entry, the rights inherited from above, the entry's IOVA, and the
        /// range's end. A caller comparing the walk with an ordered record of
        /// it (the shadow, on a replay) can then read the entries of this one
        /// table in a plain loop and `skipLevel1(_:)` past those that match,
        /// instead of taking one `next()` per leaf.
        public struct Level1Run {
            public let table: UnsafePointer<UInt64>
            public let index: Int
            public let rights: UInt64
            public let iova: UInt64
            public let end: UInt64
            /// Bits that must be zero in a level-1 leaf (spec 9.8).
            public let reservedMask: UInt64
            public let addressMask: UInt64
            /// Entries the walk may still read: the most `skipLevel1` takes.
            public let budget: Int

            @inlinable
            init(table: UnsafePointer<UInt64>, index: Int, rights: UInt64, iova: UInt64, end: UInt64, reservedMask: UInt64,
                 addressMask: UInt64, budget: Int) {
                self.table = table
                self.index = index
                self.rights = rights
                self.iova = iova
                self.end = end
                self.reservedMask = reservedMask
                self.addressMask = addressMask
                self.budget = budget
            }
        }

        @inlinable
        public var level1Run: Level1Run? {
            guard !done, level == 1, pendingFault == nil else { return nil }
            return Level1Run(table: UnsafePointer<UInt64>(bitPattern: Self.get(tables, 1))!,
                             index: Int((iova >> 12) & 511), rights: UInt64(Self.get(rights, 2)),
                             iova: iova, end: end, reservedMask: Self.mask(leafMasks, 1), addressMask: addressMask,
                             budget: remaining)
        }

        /// Moves past `count` entries of the current level-1 table, counting
        /// them against the budget (they were read). The caller stays inside
        /// the table, stops before its last entry, whose successor needs the
        /// climb that `next()` does, and takes at most `Level1Run.budget`.
        @inlinable
        public mutating func skipLevel1(_ count: Int) {
            precondition(level == 1 && Int((iova >> 12) & 511) + count < 512, "skipLevel1 stays inside one table")
            precondition(count <= remaining, "skipLevel1 stays inside the walk budget")
            remaining &-= count
            iova += UInt64(count) << 12
            if iova >= end { done = true }
        }

        /// Ends the walk at `iova` because the budget is spent: one fault,
        /// then nothing. Out of line: it runs once per sync at most.
        @usableFromInline @inline(never)
        mutating func exhaustBudget() -> Step {
            done = true
            stopIOVA = iova
            fault = TranslationFault(
                reason: .walkBudgetExceeded, iova: iova, level: level, value: UInt64(budgetLimit),
                detail: "walk budget exhausted: \(budgetLimit) paging entries read in this sync; "
                    + "stopped at iova 0x\(String(iova, radix: 16)), and mappings from there on were left as they were "
                    + "(neither mapped nor unmapped). If this address space is legitimately that large, raise the "
                    + "config key walk-budget; otherwise the guest's tables alias themselves (an entry pointing at "
                    + "its own table or at a higher-level one)")
            return .fault
        }

        /// The next leaf or fault in IOVA order; nil when the range is done.
        @inlinable @inline(__always)
        public mutating func next() -> Step? {
            if let pending = pendingFault {
                pendingFault = nil
                fault = pending
                return .fault
            }
            while !done {
                // Every entry read counts, leaf or not, present or not: an
                // aliased table costs its reads even when it maps nothing.
                if remaining <= 0 { return exhaustBudget() }
                remaining &-= 1
                let shift = vtdLevelShift(level)
                let index = Int((iova >> shift) & 511)
                let raw = UInt64(littleEndian: UnsafePointer<UInt64>(bitPattern: Self.get(tables, level))![index])
                let entryBase = iova & ~((UInt64(1) << shift) - 1)
                // The IOVA just past this entry's span; 0 on wrap past 2^64.
                let next = entryBase &+ (UInt64(1) << shift)
                var result: Step?
                if raw & 3 != 0 {
                    let isLeaf = level == 1 || (raw & 0x80 != 0 && level <= 3)
                    let reserved = raw & (isLeaf ? Self.mask(leafMasks, level) : Self.mask(tableMasks, level))
                    let allowed = UInt(raw & 3) & Self.get(rights, level + 1)
                    if reserved != 0 {
                        fault = TranslationFault(reason: .entryReserved, iova: entryBase, level: level, value: raw,
                                                 detail: detailedFaults ? "reserved bits 0x\(String(reserved, radix: 16)) set" : "")
                        result = .fault
                    } else if isLeaf {
                        if allowed != 0 {
                            result = .leaf(SecondLevelLeaf(iova: entryBase, gpa: raw & addressMask, sizeShift: UInt8(shift),
                                                           permission: DMAPermission(rawValue: UInt8(truncatingIfNeeded: allowed))))
                        }
                    } else if allowed == 0 {
                        // Nothing below can grant access; the hardware would
                        // fault every request, so there is nothing to map.
                    } else if let child = memory.tablePage(at: raw & addressMask) {
                        Self.set(&tables, level - 1, UInt(bitPattern: child))
                        Self.set(&rights, level, allowed)
                        level -= 1
                        continue
                    } else {
                        fault = TranslationFault(reason: .tableOutsideRAM, iova: entryBase, level: level - 1,
                                                 value: raw & addressMask,
                                                 detail: detailedFaults ? "level-\(level - 1) table is not in guest RAM" : "")
                        result = .fault
                    }
                }
                // Move to the next entry; climb while this table is exhausted.
                iova = next
                if iova == 0 || iova >= end {
                    done = true
                } else {
                    while level < levels && (iova >> vtdLevelShift(level)) & 511 == 0 {
                        level += 1
                    }
                }
                if let result { return result }
            }
            return nil
        }
    }
}
