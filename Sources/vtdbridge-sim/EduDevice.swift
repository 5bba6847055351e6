import Glibc
import Logging
import Posix
import VFIO

/// QEMU's "edu" teaching device (PCI 1234:11e8), driven through a VFIO
/// device fd the way a VMM's device model would pass it through: config
/// space and BAR0 via the fd, DMA addresses are IOVAs of the guest's VT-d
/// domain, translated by the host IOMMU through the daemon's mappings.
///
/// BAR0 registers (QEMU docs/specs/edu.txt): 0x00 identification
/// 0x010000ed, 0x80 DMA source, 0x88 DMA destination, 0x90 count, 0x98
/// command (bit 0 start, bit 1 direction: 1 = device buffer → RAM). Its
/// 4 KiB buffer sits at device address 0x40000. Its DMA mask is 28 bits.
final class EduDevice {
    let address: String
    let device: Device
    let config: RegionInfo
    let bar0: RegionInfo
    static let buffer: UInt64 = 0x40000
    static let dmaLimit: UInt64 = 1 << 28

    init(adopting fd: FileDescriptor, address: String) throws(VFIOError) {
        self.address = address
        var quiet = Logger(label: "edu")
        quiet.logLevel = .critical
        device = Device(adopting: fd, name: address, logger: quiet)
        config = try device.regionInfo(RegionInfo.pciConfig)
        bar0 = try device.regionInfo(RegionInfo.pciBAR(0))
        let id = try device.read(UInt32.self, from: bar0, at: 0)
        guard id & 0xffff == 0x00ed else {
            throw VFIOError(operation: "edu identification", subject: address, errno: 0,
                            detail: "read 0x\(String(id, radix: 16)) at BAR0+0, expected 0x…00ed")
        }
        // Memory space and bus master (PCI command register bits 1 and 2):
        // without bus mastering the device cannot DMA at all.
        let command = try device.read(UInt16.self, from: config, at: 4)
        try device.write(command | 0x6, to: config, at: 4)
    }

    struct Timeout: Error, CustomStringConvertible {
        var description: String
    }

    /// One DMA transfer; returns when the device reports it done.
    func dma(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool) throws {
        try device.write(source, to: bar0, at: 0x80)
        try device.write(destination, to: bar0, at: 0x88)
        try device.write(count, to: bar0, at: 0x90)
        try device.write(UInt64(toRAM ? 3 : 1), to: bar0, at: 0x98)
        // edu completes a transfer from a 100 ms timer of virtual time.
        let deadline = ContinuousClock.now + .seconds(20)
        while try device.read(UInt64.self, from: bar0, at: 0x98) & 1 != 0 {
            if ContinuousClock.now > deadline { throw Timeout(description: "edu \(address): DMA did not finish in 20 s") }
            usleep(5_000)
        }
    }

    /// RAM (at `iova`) → the device's buffer at `offset`.
    func read(iova: UInt64, into offset: UInt64 = 0, count: UInt64) throws {
        try dma(source: iova, destination: Self.buffer + offset, count: count, toRAM: false)
    }

    /// The device's buffer at `offset` → RAM (at `iova`).
    func write(from offset: UInt64 = 0, iova: UInt64, count: UInt64) throws {
        try dma(source: Self.buffer + offset, destination: iova, count: count, toRAM: true)
    }
}

extension EduDevice {
    /// Starts one DMA transfer without waiting for it (see `dma`).
    func start(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool) throws {
        try device.write(source, to: bar0, at: 0x80)
        try device.write(destination, to: bar0, at: 0x88)
        try device.write(count, to: bar0, at: 0x90)
        try device.write(UInt64(toRAM ? 3 : 1), to: bar0, at: 0x98)
    }

    var busy: Bool {
        get throws { try device.read(UInt64.self, from: bar0, at: 0x98) & 1 != 0 }
    }
}
