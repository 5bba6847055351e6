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
        precondition((3...5).contains(levels))
        let limit = Self.addressLimit(levels: levels)
        let end = min(end, limit)
        guard start < end else { return }
        guard let top = memory.tablePage(at: table) else {
            onFault(TranslationFault(reason: .tableOutsideRAM, iova: start, level: levels, value: table,
                                     detail: "top-level table is not a page of guest RAM"))
            return
        }
        let addressMask = caps.addressMask & ~0xfff
        // Per-level state, indexed by level (1...levels). Fixed-size tuples
        // would avoid the heap, but 6-element arrays are allocated once per walk.
        var tables = [UnsafePointer<UInt64>?](repeating: nil, count: 6)
        var read = [Bool](repeating: true, count: 7)
        var write = [Bool](repeating: true, count: 7)
        tables[levels] = top
        var level = levels
        var iova = start & ~((UInt64(1) << vtdLevelShift(1)) - 1)
        while true {
            let shift = vtdLevelShift(level)
            let index = Int((iova >> shift) & 511)
            let raw = UInt64(littleEndian: tables[level]![index])
            let entryBase = iova & ~((UInt64(1) << shift) - 1)
            // The IOVA just past this entry's span; 0 on wrap past 2^64.
            let next = entryBase &+ (UInt64(1) << shift)
            var advance = true
            if raw & 3 != 0 {
                let isLeaf = level == 1 || (raw & 0x80 != 0 && level <= 3)
                let reserved = raw & (isLeaf ? leafMasks[level] : tableMasks[level])
                let r = read[level + 1 > levels ? 6 : level + 1] && raw & 1 != 0
                let w = write[level + 1 > levels ? 6 : level + 1] && raw & 2 != 0
                if reserved != 0 {
                    onFault(TranslationFault(reason: .entryReserved, iova: entryBase, level: level, value: raw,
                                             detail: "reserved bits 0x\(String(reserved, radix: 16)) set"))
                } else if isLeaf {
                    if r || w {
                        onLeaf(SecondLevelLeaf(iova: entryBase, gpa: raw & addressMask,
                                               sizeShift: UInt8(shift), read: r, write: w))
                    }
                } else if !(r || w) {
                    // Nothing below can grant access; the hardware would fault
                    // every request, so there is nothing to map.
                } else if let child = memory.tablePage(at: raw & addressMask) {
                    tables[level - 1] = child
                    read[level] = r
                    write[level] = w
                    level -= 1
                    advance = false
                } else {
                    onFault(TranslationFault(reason: .tableOutsideRAM, iova: entryBase, level: level - 1,
                                             value: raw & addressMask,
                                             detail: "level-\(level - 1) table is not in guest RAM"))
                }
            }
            guard advance else { continue }
            // Move to the next entry; climb while this table is exhausted.
            iova = next
            if iova == 0 || iova >= end { return }
            while level < levels && (iova >> vtdLevelShift(level)) & 511 == 0 {
                level += 1
            }
        }
    }
}
