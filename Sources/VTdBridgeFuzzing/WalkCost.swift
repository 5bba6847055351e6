import Bridge
import Logging
import VFIO
import VTd

/// An upper bound on the entries a full walk reads, from the tables in
/// guest RAM: a table costs its 512 entries plus, per present entry,
/// `perPresentEntry` (a leaf, a fault and its text) and, when the entry
/// may point at a lower table, that table's cost. Memoized per (page,
/// level), so aliasing tables cost one computation each. Conservative:
/// rights and reserved bits, which can only stop a walk, are ignored.
final class WalkCost {
    static let perPresentEntry = 32
    static let cap = 1 << 40
    private var memo: [Int] = []
    private var stamp: [UInt32] = []
    private var generation: UInt32 = 0
    private var memory: GuestRAM?
    private var addressMask: UInt64 = 0

    func begin(memory: GuestRAM, caps: IOMMUCapabilities) {
        self.memory = memory
        addressMask = caps.addressMask & ~0xfff
        generation &+= 1
        let pages = Int((SyncWorld.regionA.size + SyncWorld.regionB.size) >> 12) * 6
        if memo.count != pages {
            memo = [Int](repeating: 0, count: pages)
            stamp = [UInt32](repeating: 0, count: pages)
        }
    }

    private func slot(_ gpa: UInt64, _ level: Int) -> Int? {
        let a = SyncWorld.regionA, b = SyncWorld.regionB
        let page: UInt64
        if gpa >= a.gpa && gpa - a.gpa < a.size {
            page = (gpa - a.gpa) >> 12
        } else if gpa >= b.gpa && gpa - b.gpa < b.size {
            page = (a.size + gpa - b.gpa) >> 12
        } else {
            return nil
        }
        return Int(page) * 6 + level
    }

    func walk(table: UInt64, levels: Int) -> Int {
        guard (3 ... 5).contains(levels) else { return 0 }
        return cost(table & addressMask, levels)
    }

    private func cost(_ gpa: UInt64, _ level: Int) -> Int {
        guard let memory, let page = memory.tablePage(at: gpa), let slot = slot(gpa, level) else { return 1 }
        if stamp[slot] == generation { return memo[slot] }
        // Mark first: a table reachable from itself is charged once per path
        // through the memo, which the saturating cap keeps finite.
        stamp[slot] = generation
        memo[slot] = Self.cap
        var total = 512
        for k in 0 ..< 512 {
            let raw = UInt64(littleEndian: page[k])
            guard raw & 3 != 0 else { continue }
            total += Self.perPresentEntry
            if level > 1 && !(raw & 0x80 != 0 && level <= 3) {
                total += cost(raw & addressMask, level - 1)
            }
            if total >= Self.cap { total = Self.cap; break }
        }
        memo[slot] = total
        return total
    }
}
