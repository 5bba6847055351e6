import VTd

/// The part of QEMU's guest RAM that holds the guest's VT-d tables, as the
/// guest-side table writer (VTdGuest's GuestTableWriter) needs it: pages it
/// can load and store words in. The writer works on a local copy; `flush`
/// then stores every word that differs from what QEMU holds, over qtest,
/// so QEMU's RAM ends up with exactly the tables the writer built.
///
/// Nothing but the guest writes these pages (no DMA is ever mapped onto
/// them), so "what QEMU holds" is known without reading it back: zero at
/// QEMU's start (fresh RAM), then whatever was flushed.
///
/// Flush order: words go out from the highest address down. The writer
/// stores a context or root entry's high half before its low half (which
/// holds P), and its allocator hands out pages upwards, so a new table lies
/// above the entry that points at it; highest-first therefore publishes the
/// high half before P and a table before the pointer to it, as a guest on a
/// real CPU orders its stores. (QEMU reads tables only on an invalidation
/// or a DMA, neither of which happens during a flush, so the order is for
/// fidelity, not for correctness here.)
final class QEMUGuestTableMemory: GuestMemoryWriter {
    let area: Range<UInt64>
    private let local: UnsafeMutablePointer<UInt64>
    private let inQEMU: UnsafeMutablePointer<UInt64>
    private var touched: Set<Int> = []
    private let words: Int

    init(area: Range<UInt64>) {
        precondition(area.lowerBound & 0xfff == 0 && area.upperBound & 0xfff == 0 && !area.isEmpty)
        self.area = area
        words = Int(area.count / 8)
        local = .allocate(capacity: words)
        local.initialize(repeating: 0, count: words)
        inQEMU = .allocate(capacity: words)
        inQEMU.initialize(repeating: 0, count: words)
    }

    deinit {
        local.deallocate()
        inQEMU.deallocate()
    }

    private func page(_ gpa: UInt64) -> Int? {
        guard gpa & 0xfff == 0, area.contains(gpa) else { return nil }
        return Int((gpa - area.lowerBound) >> 12)
    }

    func tablePage(at gpa: UInt64) -> UnsafePointer<UInt64>? {
        page(gpa).map { UnsafePointer(local + $0 * 512) }
    }

    func mutableTablePage(at gpa: UInt64) -> UnsafeMutablePointer<UInt64>? {
        guard let p = page(gpa) else { return nil }
        touched.insert(p)
        return local + p * 512
    }

    /// Stores every changed word into QEMU's RAM ("writeq"), highest address
    /// first. Returns how many words were written.
    @discardableResult
    func flush(_ qtest: QTestClient) throws(QTestError) -> Int {
        var written = 0
        for p in touched.sorted(by: >) {
            for i in stride(from: p * 512 + 511, through: p * 512, by: -1) where local[i] != inQEMU[i] {
                try qtest.writeq(area.lowerBound + UInt64(i) * 8, UInt64(littleEndian: local[i]))
                inQEMU[i] = local[i]
                written += 1
            }
        }
        touched.removeAll(keepingCapacity: true)
        return written
    }
}
