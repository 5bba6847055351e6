import Bridge
import Glibc
import VTd
import VTdGuest

/// The scale figures, on the host with the dry-run backend (no
/// ioctls): eight devices, each in its own address space of 256K 4 KiB
/// leaves, and one guest of 1 TiB mapped with 2 MiB leaves.
///
/// Guest RAM here is a sparse memfd (GuestRAMBacking.anonymous: memfd +
/// ftruncate, mapped MAP_SHARED), as large as the guest: every leaf points at
/// its own guest page, none aliases another, and only the table pages are
/// ever written, so a 1 TiB guest costs the bench a few MiB.
struct ScaleBench {
    struct Figures {
        var multiFullSync: [Double] = []     // seconds, all 8 spaces
        var multiReplay: [Double] = []       // seconds, all 8 spaces
        var multiReplayIoctls = -1
        var multiShadowBytesPerMapping: [Double] = []
        var multiRSSPerMapping: [Double] = []
        var teraFullSync: [Double] = []
        var teraReplay: [Double] = []
        var teraReplayIoctls = -1
    }

    static let devices = 8
    static let leavesPerDevice = 256 << 10
    static var multiLeaves: Int { devices * leavesPerDevice }
    static let teraLeaves = 1 << 19   // 1 TiB / 2 MiB

    /// Guest RAM of `dataSize` bytes of data (never touched) followed by a
    /// table area of `tableBytes`, with the root table in it.
    static func guest(dataSize: UInt64, tableBytes: UInt64) throws -> (GuestRAM, GuestTableWriter<GuestRAM>) {
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: dataSize + tableBytes, backing: .anonymous)])
        let writer = try GuestTableWriter(memory: ram, caps: .make(), tableArea: dataSize..<(dataSize + tableBytes))
        return (ram, writer)
    }

    /// Device d (00:03.d) in domain d + 1 maps IOVA [0, 1 GiB) onto its own
    /// GiB of guest RAM, [d GiB, d + 1 GiB), in 4 KiB leaves.
    static func eightDevices() throws -> (GuestRAM, GuestTableWriter<GuestRAM>, [SourceID]) {
        let gib: UInt64 = 1 << 30
        // Per device: 512 level-1 tables and three above them; plus slack.
        let tables = UInt64(devices * (leavesPerDevice / 512 + 8) * 4096 + (4 << 20))
        let (ram, empty) = try guest(dataSize: UInt64(devices) * gib, tableBytes: tables)
        var writer = empty
        var sids: [SourceID] = []
        for d in 0..<devices {
            let sid = SourceID(bus: 0, device: 3, function: d)!
            sids.append(sid)
            _ = try writer.attach(sid, domain: UInt16(d + 1))
            let base = UInt64(d) * gib
            for i in 0..<UInt64(leavesPerDevice) {
                _ = try writer.map(domain: UInt16(d + 1), iova: i << 12, gpa: base + (i << 12))
            }
        }
        return (ram, writer, sids)
    }

    /// One device mapping a 1 TiB guest one to one (IOVA = GPA) with 2 MiB leaves.
    static func teraGuest() throws -> (GuestRAM, GuestTableWriter<GuestRAM>, SourceID) {
        let tib: UInt64 = 1 << 40
        let tables = UInt64((teraLeaves / 512 + 8) * 4096 + (1 << 20))
        let (ram, empty) = try guest(dataSize: tib, tableBytes: tables)
        var writer = empty
        let sid = SourceID(rawValue: 0x18)
        _ = try writer.attach(sid, domain: 1)
        for i in 0..<UInt64(teraLeaves) {
            _ = try writer.map(domain: 1, iova: i << 21, gpa: i << 21, sizeShift: 21)
        }
        return (ram, writer, sid)
    }

    /// glibc's malloc_trim(0): returns free heap pages to the kernel. Not in
    /// the Glibc module's headers, so found at run time; a no-op elsewhere.
    static func trimHeap() {
        typealias Trim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: Trim.self)(0)
    }

    static func run(repetitions: Int) throws -> Figures {
        var f = Figures()
        do {
            let (ram, writer, sids) = try eightDevices()
            for _ in 0..<repetitions {
                // Freed heap from the repetition before goes back to the
                // kernel first, so that the RSS growth below is this sync's.
                trimHeap()
                let before = SyncBench.rssBytes()
                let b = try SyncBench.bridge(ram, writer)
                var maps = 0
                f.multiFullSync.append(try SyncBench.seconds {
                    for sid in sids { maps += try b.attach(sid, backend: DryRunBackend()).maps }
                })
                precondition(maps == multiLeaves, "the 8-device full sync mapped \(maps)")
                f.multiRSSPerMapping.append(Double(SyncBench.rssBytes() - before) / Double(multiLeaves))
                let shadow = sids.reduce(0) { $0 + b.spaces[$1]!.shadow.allocatedBytes }
                f.multiShadowBytesPerMapping.append(Double(shadow) / Double(multiLeaves))
                var ioctls = 0
                f.multiReplay.append(try SyncBench.seconds { ioctls = try b.replay().ioctls })
                f.multiReplayIoctls = max(f.multiReplayIoctls, ioctls)
            }
        }
        do {
            let (ram, writer, sid) = try teraGuest()
            for _ in 0..<repetitions {
                let b = try SyncBench.bridge(ram, writer)
                var maps = 0
                f.teraFullSync.append(try SyncBench.seconds { maps = try b.attach(sid, backend: DryRunBackend()).maps })
                precondition(maps == teraLeaves, "the 1 TiB full sync mapped \(maps)")
                var ioctls = 0
                f.teraReplay.append(try SyncBench.seconds { ioctls = try b.replay(sid).ioctls })
                f.teraReplayIoctls = max(f.teraReplayIoctls, ioctls)
            }
        }
        return f
    }
}
