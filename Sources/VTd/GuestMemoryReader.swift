/// How the VT-d model reads guest RAM.
///
/// Every VT-d structure the model reads (root table, context table, second-level
/// tables) is one 4 KiB page holding 64-bit little-endian words (VT-d spec 9.1,
/// 9.3, 9.8). The model asks for whole pages so that the walk reads entries
/// with plain loads, and so that the bounds check is done once per table, not
/// once per entry.
public protocol GuestMemoryReader {
    /// The 512 words of the 4 KiB page at `gpa`, or nil when `gpa` is not
    /// 4 KiB-aligned or the page does not lie wholly inside guest RAM.
    func tablePage(at gpa: UInt64) -> UnsafePointer<UInt64>?
}

/// Guest memory the guest-side table writer can also store into.
public protocol GuestMemoryWriter: GuestMemoryReader {
    /// The page at `gpa` for writing, under the same rules as `tablePage(at:)`.
    func mutableTablePage(at gpa: UInt64) -> UnsafeMutablePointer<UInt64>?
}

extension GuestMemoryReader {
    /// Reads the 64-bit word at `gpa` (8-byte aligned), or nil outside RAM.
    @inlinable
    public func word(at gpa: UInt64) -> UInt64? {
        guard gpa & 7 == 0, let page = tablePage(at: gpa & ~0xfff) else { return nil }
        return UInt64(littleEndian: page[Int((gpa & 0xfff) >> 3)])
    }
}
