import Glibc
import VTd

/// The edu device (PCI 1234:11e8, QEMU's docs/specs/edu.rst) at 00:03.0, as
/// the qtest guest's driver sees it: enumerated and given BAR0 through
/// configuration space, then driven through BAR0's registers with MMIO.
///
/// BAR0: 0x00 identification (0x010000ed), 0x04 liveness (reads back the
/// bitwise inverse of what was written), 0x80 DMA source, 0x88 DMA
/// destination, 0x90 count, 0x98 command (bit 0 start/busy, bit 1
/// direction: 1 = edu buffer → RAM). The 4 KiB buffer is at device address
/// 0x40000; a DMA outside it makes QEMU's edu abort QEMU, so every transfer
/// here is checked against it first. Addresses on the RAM side are IOVAs
/// when the guest's VT-d translates, clamped by edu to its 28-bit DMA mask.
struct QEMUGuestEdu {
    let qtest: QTestClient
    let pci: QEMUGuestPCI
    let bar0: UInt64
    /// Waits a little while a transfer is in flight: a clock step under
    /// -accel qtest with an emulated edu (its DMA completes from a timer of
    /// virtual time, 100 ms after the start), a sleep otherwise.
    let tick: () throws -> Void

    static let vendorDevice: UInt32 = 0x11e8_1234
    static let buffer: UInt64 = 0x40000
    static let bufferSize: UInt64 = 0x1000
    static let dmaLimit: UInt64 = 1 << 28

    /// Enumerates the function: checks its IDs, sizes BAR0 and places it at
    /// `bar0`, turns on memory decoding and bus mastering (without which the
    /// device cannot DMA), and checks the identification and liveness
    /// registers through the new BAR.
    static func enumerate(_ qtest: QTestClient, bar0: UInt64, tick: @escaping () throws -> Void) throws -> QEMUGuestEdu {
        let pci = QEMUGuestPCI(qtest: qtest, bus: 0, device: 3, function: 0)
        let id = try pci.read32(QEMUGuestPCI.vendorID)
        guard id == vendorDevice else {
            throw SimError("00:03.0 has vendor:device \(hex(id & 0xffff)):\(hex(id >> 16)), expected 1234:11e8 (edu)")
        }
        try pci.write16(QEMUGuestPCI.command, 0)
        let size = try pci.memoryBARSize(QEMUGuestPCI.bar0)
        guard bar0 & (size - 1) == 0 else { throw SimError("BAR0 base \(hex(bar0)) is not aligned to its size \(hex(size))") }
        try pci.write32(QEMUGuestPCI.bar0, UInt32(bar0))
        try pci.write16(QEMUGuestPCI.command, QEMUGuestPCI.memorySpace | QEMUGuestPCI.busMaster)
        let edu = QEMUGuestEdu(qtest: qtest, pci: pci, bar0: bar0, tick: tick)
        let ident = try qtest.readl(bar0)
        guard ident & 0xff == 0xed else { throw SimError("edu identification register reads \(hex(ident)), expected 0x…ed") }
        try qtest.writel(bar0 + 4, 0x1234_5678)
        let live = try qtest.readl(bar0 + 4)
        guard live == ~UInt32(0x1234_5678) else { throw SimError("edu liveness register reads \(hex(live)) after 0x12345678, expected \(hex(~UInt32(0x1234_5678)))") }
        return edu
    }

    /// One transfer, started and waited for. Returns how long it took.
    @discardableResult
    func dma(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool, timeout: Duration = .seconds(20)) throws -> Duration {
        let (ram, device) = toRAM ? (destination, source) : (source, destination)
        // QEMU 7.2's edu checks that the transfer's end lies strictly inside
        // the buffer (so a whole-buffer transfer fails), and reports a
        // failed check with hw_error, which aborts QEMU.
        precondition(count > 0 && device >= Self.buffer && device + count < Self.buffer + Self.bufferSize,
                     "edu's buffer is 0x40000..<0x41000 and a transfer must end before 0x41000; QEMU's edu aborts otherwise")
        precondition(ram + count <= Self.dmaLimit, "edu clamps DMA addresses to 28 bits")
        let start = ContinuousClock.now
        try qtest.writeq(bar0 + 0x80, source)
        try qtest.writeq(bar0 + 0x88, destination)
        try qtest.writeq(bar0 + 0x90, count)
        try qtest.writeq(bar0 + 0x98, toRAM ? 3 : 1)
        while try qtest.readq(bar0 + 0x98) & 1 != 0 {
            if start.duration(to: .now) > timeout {
                throw SimError("edu DMA \(toRAM ? "buffer → RAM" : "RAM → buffer") at \(hex(ram)) did not finish within \(timeout)")
            }
            try tick()
        }
        return start.duration(to: .now)
    }

    /// RAM at `iova` → edu buffer at `offset`.
    @discardableResult
    func fromRAM(iova: UInt64, toBuffer offset: UInt64 = 0, count: UInt64) throws -> Duration {
        try dma(source: iova, destination: Self.buffer + offset, count: count, toRAM: false)
    }

    /// edu buffer at `offset` → RAM at `iova`.
    @discardableResult
    func toRAM(fromBuffer offset: UInt64 = 0, iova: UInt64, count: UInt64) throws -> Duration {
        try dma(source: Self.buffer + offset, destination: iova, count: count, toRAM: true)
    }

    /// The command and BAR0 registers (after a reset both read 0).
    func configState() throws -> (command: UInt16, bar0: UInt32) {
        (try pci.read16(QEMUGuestPCI.command), try pci.read32(QEMUGuestPCI.bar0))
    }
}
