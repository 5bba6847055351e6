import VTd

/// Hands out zeroed 4 KiB pages of guest RAM for VT-d tables, from a range the
/// simulated guest sets aside for them (a guest kernel takes them from its own
/// page allocator).
public struct TablePageAllocator {
    public let start: UInt64
    public let end: UInt64
    private var next: UInt64
    private var freed: [UInt64] = []

    public init(start: UInt64, end: UInt64) {
        precondition(start & 0xfff == 0 && end & 0xfff == 0 && start < end)
        self.start = start
        self.end = end
        next = start
    }

    public struct Exhausted: Error, CustomStringConvertible {
        public var description: String { "the guest's page-table area is full" }
    }

    public mutating func allocate<Memory: GuestMemoryWriter>(in memory: Memory) throws -> UInt64 {
        let gpa: UInt64
        if let reused = freed.popLast() {
            gpa = reused
        } else {
            guard next < end else { throw Exhausted() }
            gpa = next
            next += 4096
        }
        guard let page = memory.mutableTablePage(at: gpa) else {
            preconditionFailure("table area page 0x\(String(gpa, radix: 16)) is not in guest RAM")
        }
        page.update(repeating: 0, count: 512)
        return gpa
    }

    public mutating func free(_ gpa: UInt64) { freed.append(gpa) }
}
