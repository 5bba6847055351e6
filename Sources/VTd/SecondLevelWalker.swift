/// Walks second-level page tables over an IOVA range, in IOVA order.
///
/// The walk is iterative with one cursor per level, so its depth is the table
/// depth (3 to 5) and nothing a guest writes can make it recurse or loop: every
/// step moves the IOVA cursor forward. A table that points at itself or at a
/// higher level is therefore walked as the aliasing the hardware would also
/// see, and is bounded by the range like any other table.
///
/// Access rights are the AND of R and W along the path (spec 3.6.1). A present
/// entry with a reserved bit set is a fault (spec 7.1.3 reason 0x0C): it is
/// reported and nothing below it is mapped.
public struct SecondLevelWalker<Memory: GuestMemoryReader> {
    public let memory: Memory
    public let caps: IOMMUCapabilities
    // Reserved masks, precomputed per (level, leaf) so the hot loop does no work
    // beyond one AND per entry.
    @usableFromInline let tableMasks: [UInt64]
    @usableFromInline let leafMasks: [UInt64]

    public init(memory: Memory, caps: IOMMUCapabilities) {
        self.memory = memory
        self.caps = caps
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
    /// may extend outside the range.
    @inlinable
    public func walk(table: UInt64, levels: Int, start: UInt64, end: UInt64,
                     leaf onLeaf: (SecondLevelLeaf) -> Void,
                     fault onFault: (TranslationFault) -> Void) {
        var steps = self.steps(table: table, levels: levels, start: start, end: end)
        while let step = steps.next() {
            switch step {
            case let .leaf(leaf): onLeaf(leaf)
            case .fault: onFault(steps.fault!)
            }
        }
    }

    /// The same walk, pulled one step at a time: a caller that merges it with
    /// another ordered stream (the shadow) runs as one loop, with no closure
    /// call per leaf.
    @inlinable
    public func steps(table: UInt64, levels: Int, start: UInt64, end: UInt64) -> Steps {
        precondition((3...5).contains(levels))
        return Steps(walker: self, table: table, levels: levels, start: start, end: min(end, Self.addressLimit(levels: levels)))
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
        /// The fault of the last `.fault` step.
        public var fault: TranslationFault?

        @inlinable
        init(walker: SecondLevelWalker, table: UInt64, levels: Int, start: UInt64, end: UInt64) {
            memory = walker.memory
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

            @inlinable
            init(table: UnsafePointer<UInt64>, index: Int, rights: UInt64, iova: UInt64, end: UInt64, reservedMask: UInt64, addressMask: UInt64) {
                self.table = table
                self.index = index
                self.rights = rights
                self.iova = iova
                self.end = end
                self.reservedMask = reservedMask
                self.addressMask = addressMask
            }
        }

        @inlinable
        public var level1Run: Level1Run? {
            guard !done, level == 1, pendingFault == nil else { return nil }
            return Level1Run(table: UnsafePointer<UInt64>(bitPattern: Self.get(tables, 1))!,
                             index: Int((iova >> 12) & 511), rights: UInt64(Self.get(rights, 2)),
                             iova: iova, end: end, reservedMask: Self.mask(leafMasks, 1), addressMask: addressMask)
        }

        /// Moves past `count` entries of the current level-1 table. The
        /// caller stays inside the table and stops before its last entry,
        /// whose successor needs the climb that `next()` does.
        @inlinable
        public mutating func skipLevel1(_ count: Int) {
            precondition(level == 1 && Int((iova >> 12) & 511) + count < 512, "skipLevel1 stays inside one table")
            iova += UInt64(count) << 12
            if iova >= end { done = true }
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
                                                 detail: "reserved bits 0x\(String(reserved, radix: 16)) set")
                        result = .fault
                    } else if isLeaf {
                        if allowed != 0 {
                            result = .leaf(SecondLevelLeaf(iova: entryBase, gpa: raw & addressMask, sizeShift: UInt8(shift),
                                                           read: allowed & 1 != 0, write: allowed & 2 != 0))
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
                                                 detail: "level-\(level - 1) table is not in guest RAM")
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
