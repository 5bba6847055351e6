/// One PCI function's configuration space, reached the way a guest CPU does
/// without ECAM: configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2),
/// a dword address written to port 0xcf8 (bit 31 enable, bus 23:16, device
/// 15:11, function 10:8, register 7:2), then data through 0xcfc–0xcff.
/// q35 decodes it as well as its ECAM window.
struct QEMUGuestPCI {
    let qtest: QTestClient
    let bus: UInt8
    let device: UInt8
    let function: UInt8

    private func select(_ offset: UInt8) throws(QTestError) {
        let address = UInt32(1) << 31 | UInt32(bus) << 16 | UInt32(device & 0x1f) << 11
            | UInt32(function & 7) << 8 | UInt32(offset & 0xfc)
        try qtest.outl(0xcf8, address)
    }

    func read32(_ offset: UInt8) throws(QTestError) -> UInt32 {
        try select(offset)
        return try qtest.inl(0xcfc)
    }

    func write32(_ offset: UInt8, _ value: UInt32) throws(QTestError) {
        try select(offset)
        try qtest.outl(0xcfc, value)
    }

    /// A 16-bit register: the data port plus the offset's byte within the dword.
    func read16(_ offset: UInt8) throws(QTestError) -> UInt16 {
        try select(offset)
        return try qtest.inw(0xcfc + UInt16(offset & 2))
    }

    func write16(_ offset: UInt8, _ value: UInt16) throws(QTestError) {
        try select(offset)
        try qtest.outw(0xcfc + UInt16(offset & 2), value)
    }

    // Type 0 header registers (PCI Local Bus 3.0, 6.1).
    static let vendorID: UInt8 = 0x00
    static let command: UInt8 = 0x04
    static let bar0: UInt8 = 0x10
    /// Command register bits: memory space (1) and bus master (2).
    static let memorySpace: UInt16 = 1 << 1
    static let busMaster: UInt16 = 1 << 2

    /// The size of a 32-bit memory BAR, found as firmware does: write all
    /// ones, read back which address bits stick, restore (PCI 3.0, 6.2.5.1).
    /// Memory decoding must be off meanwhile, or the BAR would briefly
    /// claim the top of the address space.
    func memoryBARSize(_ bar: UInt8) throws -> UInt64 {
        let saved = try read32(bar)
        guard saved & 1 == 0 else { throw SimError("BAR at 0x\(String(bar, radix: 16)) is an I/O BAR") }
        guard (saved >> 1) & 3 == 0 else { throw SimError("BAR at 0x\(String(bar, radix: 16)) is not a 32-bit memory BAR (type \((saved >> 1) & 3))") }
        try write32(bar, 0xffff_ffff)
        let mask = try read32(bar) & ~0xf
        try write32(bar, saved)
        guard mask != 0 else { throw SimError("BAR at 0x\(String(bar, radix: 16)) is not implemented") }
        return UInt64(~mask &+ 1)
    }
}
