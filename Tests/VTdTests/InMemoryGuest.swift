import VTd
import VTdGuest

/// Guest RAM for the VT-d model's tests: one zeroed, page-aligned heap
/// buffer at GPA 0. It answers `tablePage` as the daemon's GuestRAM does (a
/// 4 KiB-aligned page wholly inside RAM, else nil), so the model's tests
/// need neither Bridge nor a memfd.
final class InMemoryGuestRAM: GuestMemoryWriter {
    let size: UInt64
    private let base: UnsafeMutableRawPointer

    init(size: UInt64) {
        precondition(size > 0 && size & 0xfff == 0, "guest RAM is whole 4 KiB pages")
        self.size = size
        base = .allocate(byteCount: Int(size), alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
    }

    deinit { base.deallocate() }

    func tablePage(at gpa: UInt64) -> UnsafePointer<UInt64>? {
        mutableTablePage(at: gpa).map { UnsafePointer($0) }
    }

    func mutableTablePage(at gpa: UInt64) -> UnsafeMutablePointer<UInt64>? {
        guard gpa & 0xfff == 0, gpa < size else { return nil }
        return (base + Int(gpa)).assumingMemoryBound(to: UInt64.self)
    }
}

/// A simulated guest for the model's tests: `InMemoryGuestRAM`, a table
/// area at its top, and the guest-side table writer.
final class InMemoryGuest {
    let memory: InMemoryGuestRAM
    var writer: GuestTableWriter<InMemoryGuestRAM>
    let caps: IOMMUCapabilities

    /// `ramSize` bytes of RAM at GPA 0, the top `tableAreaSize` bytes
    /// reserved for tables.
    init(ramSize: UInt64 = 64 << 20, tableAreaSize: UInt64 = 8 << 20, caps: IOMMUCapabilities = .make()) throws {
        memory = InMemoryGuestRAM(size: ramSize)
        self.caps = caps
        writer = try GuestTableWriter(memory: memory, caps: caps, tableArea: (ramSize - tableAreaSize)..<ramSize)
    }
}
