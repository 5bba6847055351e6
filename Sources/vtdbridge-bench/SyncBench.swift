import Bridge
import Foundation
import Glibc
import Logging
import VTd
import VTdGuest

/// Sync cost on the host, dry-run backend (no ioctls): the walk and the merge
/// with the shadow are all that is measured.
struct SyncBench {
    struct Figures {
        var fullSync4K: [Double] = []      // seconds
        var fullSync2M: [Double] = []
        var replay4K: [Double] = []
        var replayIoctls: Int = -1
        /// The floor for a replay: a bare loop over the same 1M level-1
        /// entries and shadow entries, comparing address and IOVA, with none
        /// of the rules (reserved bits, RAM bounds, usable IOVA).
        var replayFloor: [Double] = []
        var pageInvalidation: [Int: [Double]] = [:]   // leaves → seconds per invalidation
        var bytesPerMapping: [Double] = []
        var rssPerMapping: [Double] = []
    }

    static var quiet: Logger {
        var l = Logger(label: "bench")
        l.logLevel = .critical
        return l
    }

    /// A guest with `leaves` leaves of 2^shift bytes from IOVA 0, aliasing a
    /// 64 MiB data area (a guest may map one page at many IOVAs).
    static func guest(leaves: Int, shift: Int) throws -> (GuestRAM, GuestTableWriter<GuestRAM>) {
        let dataSize: UInt64 = 64 << 20
        let tables = UInt64(max(16 << 20, (leaves / 512 + 64) * 4096 * 2))
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: dataSize + tables, backing: .anonymous)])
        var writer = try GuestTableWriter(memory: ram, caps: .make(), tableArea: dataSize..<(dataSize + tables))
        _ = try writer.attach(SourceID(rawValue: 0x18), domain: 1)
        let size = UInt64(1) << UInt64(shift)
        let slots = dataSize / size
        for i in 0..<UInt64(leaves) {
            _ = try writer.map(domain: 1, iova: i * size, gpa: (i % slots) * size, sizeShift: shift)
        }
        return (ram, writer)
    }

    static func bridge(_ ram: GuestRAM, _ writer: GuestTableWriter<GuestRAM>) throws -> GuestIOMMU {
        let b = try GuestIOMMU(caps: .make(), logger: quiet)
        _ = b.setMemory(ram)
        _ = b.setRootTable(writer.rootTable)
        _ = b.setTranslationEnabled(true)
        return b
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let d = start.duration(to: .now)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func rssBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        return (Int(fields[1]) ?? 0) * 4096
    }

    /// Times the bare merge (see `Figures.replayFloor`); seconds for all leaves.
    static func bareMerge(ram: GuestRAM, writer: GuestTableWriter<GuestRAM>, shadow: [ShadowEntry]) throws -> Double {
        let tables: [UnsafePointer<UInt64>] = stride(from: UInt64(0), to: UInt64(shadow.count) * 4096, by: 2 << 20).map {
            ram.tablePage(at: writer.existingSlot(domain: 1, iova: $0, level: 1)! & ~0xfff)!
        }
        let base = ram.regions[0].hostAddress
        var mismatches = 0
        let t = seconds {
            shadow.withUnsafeBufferPointer { entries in
                var i = 0
                for table in tables {
                    for k in 0..<512 {
                        let raw = table[k]
                        let e = entries[i]
                        if e.hostAddress != base &+ (raw & 0x000f_ffff_ffff_f000) || e.iova != UInt64(i) << 12 { mismatches += 1 }
                        i += 1
                    }
                }
            }
        }
        precondition(mismatches == 0, "the bare merge found \(mismatches) differences in an unchanged space")
        return t
    }

    static func run(repetitions: Int) throws -> Figures {
        var f = Figures()
        let sid = SourceID(rawValue: 0x18)
        // 4 GiB of 4 KiB leaves: 1,048,576.
        let (ram4k, writer4k) = try guest(leaves: 1 << 20, shift: 12)
        for _ in 0..<repetitions {
            let b = try bridge(ram4k, writer4k)
            let before = rssBytes()
            var maps = 0
            f.fullSync4K.append(try seconds { maps = try b.attach(sid, backend: DryRunBackend()).maps })
            precondition(maps == 1 << 20, "full sync mapped \(maps)")
            f.rssPerMapping.append(Double(rssBytes() - before) / Double(1 << 20))
            f.bytesPerMapping.append(Double(b.spaces[sid]!.shadow.allocatedBytes) / Double(1 << 20))
            var ioctls = 0
            f.replay4K.append(try seconds { ioctls = try b.replay(sid).ioctls })
            f.replayIoctls = max(f.replayIoctls, ioctls)
            f.replayFloor.append(try bareMerge(ram: ram4k, writer: writer4k, shadow: b.spaces[sid]!.shadow.entries))
        }
        // The same 4 GiB from 2 MiB leaves: 2,048.
        let (ram2m, writer2m) = try guest(leaves: 2048, shift: 21)
        for _ in 0..<repetitions {
            let b = try bridge(ram2m, writer2m)
            f.fullSync2M.append(try seconds { _ = try b.attach(sid, backend: DryRunBackend()) })
        }
        // One page-selective invalidation of a page that changed, inside
        // spaces of 1K, 64K and 1M leaves: its cost must not grow with them.
        for leaves in [1 << 10, 1 << 16, 1 << 20] {
            var (ram, writer) = leaves == 1 << 20 ? (ram4k, writer4k) : try guest(leaves: leaves, shift: 12)
            let b = try bridge(ram, writer)
            try b.attach(sid, backend: DryRunBackend())
            let iova = UInt64(leaves / 2) * 4096
            let rounds = 2000
            var samples: [Double] = []
            for _ in 0..<repetitions {
                var descriptors: [[(low: UInt64, high: UInt64)]] = []
                for r in 0..<rounds {
                    let d = try writer.map(domain: 1, iova: iova, gpa: UInt64(r % 2 + 1) * 4096)
                    descriptors.append((d + [GuestTableWriter<GuestRAM>.wait]).map { $0.encoded })
                }
                // Tables are rewritten between rounds below; the walk each
                // round sees the latest leaf, as a real guest's would.
                var index = 0
                let t = seconds {
                    for _ in 0..<rounds {
                        let slot = writer.existingSlot(domain: 1, iova: iova, level: 1)!
                        writer.store(SecondLevelEntry.leaf(UInt64(index % 2 + 1) * 4096, level: 1, permission: .readWrite).rawValue, at: slot)
                        let r = b.process(descriptors[index])
                        precondition(r.report.maps == 1 && r.report.unmaps == 1)
                        index += 1
                    }
                }
                samples.append(t / Double(rounds))
            }
            f.pageInvalidation[leaves] = samples
            _ = ram
        }
        return f
    }
}
