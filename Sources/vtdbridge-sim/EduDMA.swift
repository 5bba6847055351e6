import ArgumentParser
import Glibc
import Logging
import Posix
import VFIO
import VTd

/// `vtdbridge-sim edu-dma`: a user-space driver for one edu device bound to
/// vfio-pci on the machine it runs on, doing DMA through that machine's
/// IOMMU: a type1 container, two buffers mapped at IOVAs, edu DMA from one
/// into its buffer and back out into the other, and the bytes compared.
///
/// Run inside a guest whose IOMMU is QEMU's caching-mode intel-iommu with
/// the edu behind `vfio-user-pci`, it exercises the whole stack: the
/// guest's intel-iommu driver writes its tables and invalidates, QEMU turns
/// that into DMA_MAPs to vtdbridged, and the real edu's DMA lands where the
/// guest's driver asked (scripts/vm/l2-guest.sh).
struct EduDMA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edu-dma",
        abstract: "DMA through this machine's IOMMU with an edu device bound to vfio-pci, and check the bytes.")

    @Option(help: ArgumentHelp("The edu's PCI address.", valueName: "DDDD:BB:DD.F"))
    var pci: String

    @Option(help: "How many round trips (RAM → edu → RAM) to run.")
    var rounds = 3

    func run() throws {
        var quiet = Logger(label: "edu-dma")
        quiet.logLevel = .critical
        let group = try Group.open(pciAddress: pci, logger: quiet)
        let container = try Container.open(logger: quiet)
        try container.attach(group)
        let device = try group.openDevice(pci)
        let edu = try EduDevice(adopting: try device.duplicateDescriptor(), address: pci)
        let page = 4096
        guard let memory = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              memory != MAP_FAILED else { throw SimError("mmap of two pages failed: \(String(cString: strerror(errno)))") }
        defer { munmap(memory, 2 * page) }
        let source: UInt64 = 0x100000, destination: UInt64 = 0x101000
        let host = UInt64(UInt(bitPattern: memory))
        // Touch both pages first: MAP_DMA pins what backs them now, and a
        // private page never written is the shared zero page. Pinned
        // read-only, it would stay the device's view after our first write
        // gave us a copy (found here: the DMA read zeros).
        memset(memory, 0xff, 2 * page)
        let started = ContinuousClock.now
        try container.map(iova: source, size: UInt64(page), hostAddress: host, permission: .read)
        try container.map(iova: destination, size: UInt64(page), hostAddress: host + UInt64(page), permission: .readWrite)
        print("edu-dma: mapped IOVA \(hex(source)) (read) and \(hex(destination)) (read/write) in \(milliseconds(started.duration(to: .now))) ms")
        let bytes = memory.assumingMemoryBound(to: UInt8.self)
        for round in 0..<rounds {
            for i in 0..<2048 { bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ round &* 13 &+ 1) }
            memset(bytes + page, 0, page)
            let t = ContinuousClock.now
            try edu.read(iova: source, count: 2048)
            try edu.write(iova: destination, count: 2048)
            guard memcmp(bytes, bytes + page, 2048) == 0 else {
                let want = (0..<8).map { String(format: "%02x", bytes[$0]) }.joined()
                let got = (0..<8).map { String(format: "%02x", bytes[page + $0]) }.joined()
                throw SimError("round \(round): the 2048 bytes DMAed through the edu to IOVA \(hex(destination)) differ from those read at IOVA \(hex(source)) (first 8: \(got), expected \(want))")
            }
            print("edu-dma: round \(round): RAM → edu → RAM, 2048 bytes checked (\(milliseconds(t.duration(to: .now))) ms)")
        }
        try container.unmap(iova: source, size: UInt64(page))
        try container.unmap(iova: destination, size: UInt64(page))
        print("edu-dma: PASS \(rounds) round(s)")
    }

    private func milliseconds(_ d: Duration) -> String {
        String(format: "%.1f", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
    }
}
