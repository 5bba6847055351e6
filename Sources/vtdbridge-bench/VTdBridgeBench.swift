import ArgumentParser
import Foundation
import Bridge
import Glibc
import VTd

/// make bench: measures, prints one table, and writes docs/BENCHMARKS.md.
/// Every figure is from this run, with its repetitions, min and median;
/// each is set beside its reference from the same run.
@main
struct VTdBridgeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtdbridge-bench",
        abstract: "Measure the bridge's cost against its references; print one table.")

    @Option(help: "Repetitions of each host figure.")
    var repetitions = 5

    @Option(help: ArgumentHelp("Directory of the release binaries (vtdbridged, vtdbridge-sim).", valueName: "PATH"))
    var bin = ".build/release"

    @Option(help: ArgumentHelp("BENCH lines from the VM run (vtdbridge-sim vm-bench).", valueName: "FILE"))
    var vmResults: String?

    @Option(help: ArgumentHelp("Write the table as Markdown here too.", valueName: "FILE"))
    var markdown: String?

    @Option(help: .hidden)
    var profileReplays: Int = 0

    @Flag(help: "Measure only the daemon's installed size and idle memory.")
    var footprintOnly = false

    @Flag(help: "Measure only the scale figures (8 devices × 256K mappings, a 1 TiB guest of 2M leaves).")
    var scaleOnly = false

    @Flag(help: "Count only the daemon's syscalls and heap allocations per invalidation (strace, an LD_PRELOAD counter).")
    var costsOnly = false

    func run() throws {
        if profileReplays > 0 {
            // For a profiler: build the 1M-leaf space once, then only replay.
            let (ram, writer) = try SyncBench.guest(leaves: 1 << 20, shift: 12)
            let b = try SyncBench.bridge(ram, writer)
            try b.attach(SourceID(rawValue: 0x18), backend: DryRunBackend())
            let t = try SyncBench.seconds { for _ in 0..<profileReplays { _ = try b.replay(SourceID(rawValue: 0x18)) } }
            print("\(t / Double(profileReplays) / Double(1 << 20) * 1e9) ns/leaf")
            return
        }
        if scaleOnly || costsOnly {
            print(render((scaleOnly ? try scaleRows() : []) + (costsOnly ? try costRows() : [])))
            return
        }
        var rows = try footprintRows()
        if footprintOnly {
            print(render(rows))
            return
        }
        let sync = try SyncBench.run(repetitions: repetitions)
        let leaves = Double(1 << 20)
        rows.append(Row(figure: "full sync, 4 GiB of 4K leaves (1,048,576 maps)", value: stats(sync.fullSync4K.map { $0 * 1e3 }, "ms"),
                        reference: "per leaf: " + stats(sync.fullSync4K.map { $0 / leaves * 1e9 }, "ns"), goal: "", n: repetitions))
        rows.append(Row(figure: "full sync, 4 GiB of 2M leaves (2,048 maps)", value: stats(sync.fullSync2M.map { $0 * 1e3 }, "ms"),
                        reference: "vs 4K leaves: \(ratio(median(sync.fullSync4K) / median(sync.fullSync2M)))x faster", goal: "", n: repetitions))
        let perLeaf = sync.replay4K.map { $0 / leaves * 1e9 }
        rows.append(Row(figure: "replay, unchanged 1M-leaf space", value: stats(perLeaf, "ns/leaf") + ", \(sync.replayIoctls) ioctls",
                        reference: "bare loop over the same PTEs and shadow, no checks: " + stats(sync.replayFloor.map { $0 / leaves * 1e9 }, "ns/leaf"),
                        goal: (median(perLeaf) <= 10 && sync.replayIoctls == 0 ? "met" : "MISSED") + " (0 ioctls, ≤10 ns/leaf)", n: repetitions))
        // "Flat in the space size": met while a space 64 or 1,024 times
        // larger costs at most 1.5 times the 1K-leaf space's median.
        let smallest = median(sync.pageInvalidation[1 << 10]!)
        for n in [1 << 10, 1 << 16, 1 << 20] {
            let v = sync.pageInvalidation[n]!.map { $0 * 1e6 }
            let growth = median(sync.pageInvalidation[n]!) / smallest
            rows.append(Row(figure: "one page-selective invalidation (remap), \(n) leaves", value: stats(v, "µs"),
                            reference: n == 1 << 10 ? "" : "vs 1K leaves: \(ratio(growth))x",
                            goal: n == 1 << 10 ? "" : (growth <= 1.5 ? "met" : "MISSED") + " (flat: ≤1.5x the 1K-leaf median)",
                            n: repetitions))
        }
        rows.append(Row(figure: "shadow memory per mapping at 1M mappings (allocated)", value: stats(sync.bytesPerMapping, "B"),
                        reference: "ShadowEntry stride: \(MemoryLayout<ShadowEntry>.stride) B; RSS growth during the sync: " + stats(sync.rssPerMapping, "B") + " (the sync reuses heap the table writer freed)",
                        goal: (median(sync.bytesPerMapping) <= 32 ? "met" : "MISSED") + " (≤32 B)", n: repetitions))
        rows += try scaleRows()
        rows += try costRows()
        let stream = StreamBench(binDirectory: bin)
        var rates: [Int: [Double]] = [:]
        for b in [1, 8, 64] {
            rates[b] = try (0..<3).map { _ in try stream.run(batch: b, count: 100_000) }
        }
        for b in [1, 8, 64] {
            rows.append(Row(figure: "invalidation stream through the daemon (dry-run), batch \(b)", value: stats(rates[b]!, "inv/s"),
                            reference: b == 1 ? "" : "vs batch 1: \(ratio(median(rates[b]!) / median(rates[1]!)))x", goal: "", n: 3))
        }
        if let vmResults {
            rows += try VMFigures.rows(from: vmResults)
        }
        let table = render(rows)
        print(table)
        if let markdown {
            let text = """
            # Benchmarks

            Written by `make bench` on \(Self.date()) on \(Self.machine()).
            Each row is from that run: repetitions (n), min / median. Every figure stands beside its
            reference from the same run, since absolute times on these machines are noisy.

            \(table)

            """
            try text.write(toFile: markdown, atomically: true, encoding: .utf8)
        }
    }

    /// The installed (stripped) size of vtdbridged and the resident memory
    /// of an idle one, each beside a reference from this run.
    func footprintRows() throws -> [Row] {
        let f = try FootprintBench(binDirectory: bin).run(repetitions: repetitions)
        func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
        var sizeReference = "unstripped build: \(mib(f.builtBytes)); /usr/bin/ls: \(mib(FootprintBench.size("/usr/bin/ls")))"
        if let systemd = f.systemdBytes { sizeReference += "; systemd 252's PID 1 with libsystemd-shared: \(mib(systemd))" }
        // The issue's goal is in MB: 10^6 bytes, taken strictly (8 MB is
        // 7.63 MiB).
        func mb(_ bytes: Int) -> Double { Double(bytes) / 1e6 }
        let goalBytes = 8_000_000
        func memoryRow(_ figure: String, _ samples: [FootprintBench.Memory], goal: Bool) -> Row {
            func med(_ k: KeyPath<FootprintBench.Memory, Int>) -> String { format(median(samples.map { mb($0[keyPath: k]) })) }
            let threads = samples.map(\.threads)
            let reference = "median RssAnon \(med(\.rssAnon)), RssFile \(med(\.rssFile)), RssShmem \(med(\.rssShmem)), Pss \(med(\.pss)) MB; "
                + "Threads \(threads.min()!)–\(threads.max()!); an idle sleep(1): " + stats(f.sleeping.map { mb($0.vmRSS) }, "MB")
            let verdict = goal ? (median(samples.map { Double($0.vmRSS) }) <= Double(goalBytes) ? "met" : "MISSED") + " (VmRSS ≤ 8 MB = 8,000,000 B, median)" : ""
            return Row(figure: figure, value: stats(samples.map { mb($0.vmRSS) }, "MB"), reference: reference, goal: verdict, n: samples.count)
        }
        return [
            Row(figure: "vtdbridged installed size (stripped, static Swift stdlib)", value: mib(f.installedBytes),
                reference: sizeReference, goal: "", n: 1),
            memoryRow("vtdbridged idle resident memory (VmRSS, started, no device; MB = 10^6 B)", f.idle, goal: false),
            memoryRow("vtdbridged idle resident memory, one device attached (dry-run, \(BenchDaemon.device))", f.oneDevice, goal: true),
            memoryRow("the same after 65,536 invalidations (batch 64), then idle 1 s (dry-run keeps no mapping journal: its pages show only with vfio)",
                      f.afterStream, goal: true),
            // VmRSS counts every page of the binary and of libc in each
            // daemon, though the page cache holds them once for all: with
            // one daemon per VM, the cost of one more is its private pages.
            Row(figure: "memory per daemon, \(FootprintBench.crowdSize) daemons running at once, one device each (Pss, MB)",
                value: stats(f.crowd.map { mb($0.pss) }, "MB"),
                reference: "private pages (Private_Clean + Private_Dirty, shared with no other process): "
                    + stats(f.crowd.map { mb($0.privateBytes) }, "MB") + "; VmRSS of each: " + stats(f.crowd.map { mb($0.vmRSS) }, "MB"),
                goal: "", n: f.crowd.count),
        ]
    }

    /// The issue's scale figures (ScaleBench): full sync, unchanged replay
    /// and memory for 8 devices × 256K 4K mappings; full sync and replay of
    /// a 1 TiB guest mapped with 2M leaves.
    func scaleRows() throws -> [Row] {
        let s = try ScaleBench.run(repetitions: repetitions)
        let multi = Double(ScaleBench.multiLeaves)
        let tera = Double(ScaleBench.teraLeaves)
        let replayPerLeaf = s.multiReplay.map { $0 / multi * 1e9 }
        let teraReplayPerLeaf = s.teraReplay.map { $0 / tera * 1e9 }
        let ram = "guest RAM: a sparse memfd as large as the guest, every leaf its own page (no aliasing)"
        return [
            Row(figure: "full sync, 8 devices × 256K 4K leaves (2,097,152 maps, 8 address spaces)", value: stats(s.multiFullSync.map { $0 * 1e3 }, "ms"),
                reference: "per leaf: " + stats(s.multiFullSync.map { $0 / multi * 1e9 }, "ns") + "; " + ram, goal: "", n: repetitions),
            Row(figure: "replay, unchanged 8 × 256K-leaf spaces", value: stats(replayPerLeaf, "ns/leaf") + ", \(s.multiReplayIoctls) ioctls",
                reference: "total: " + stats(s.multiReplay.map { $0 * 1e3 }, "ms"),
                goal: (median(replayPerLeaf) <= 10 && s.multiReplayIoctls == 0 ? "met" : "MISSED") + " (0 ioctls, ≤10 ns/leaf)", n: repetitions),
            Row(figure: "shadow memory per mapping, 8 × 256K mappings (allocated)", value: stats(s.multiShadowBytesPerMapping, "B"),
                reference: "RSS growth during the sync, after malloc_trim: " + stats(s.multiRSSPerMapping, "B") + " per mapping",
                goal: (median(s.multiShadowBytesPerMapping) <= 32 ? "met" : "MISSED") + " (≤32 B)", n: repetitions),
            Row(figure: "full sync, 1 TiB guest of 2M leaves (524,288 maps)", value: stats(s.teraFullSync.map { $0 * 1e3 }, "ms"),
                reference: "per leaf: " + stats(s.teraFullSync.map { $0 / tera * 1e9 }, "ns") + "; IOVA = GPA, " + ram, goal: "", n: repetitions),
            // The issue asks only for this figure; the goal it shares with
            // every replay is "no ioctl". Per leaf, set beside the 4K replay.
            Row(figure: "replay, unchanged 1 TiB guest of 2M leaves", value: stats(teraReplayPerLeaf, "ns/leaf") + ", \(s.teraReplayIoctls) ioctls",
                reference: "total: " + stats(s.teraReplay.map { $0 * 1e3 }, "ms")
                    + "; per leaf vs the 8 × 256K 4K replay: \(ratio(median(teraReplayPerLeaf) / median(replayPerLeaf)))x",
                goal: (s.teraReplayIoctls == 0 ? "met" : "MISSED") + " (0 ioctls)", n: repetitions),
        ]
    }

    /// Syscalls and heap allocations per invalidation in the daemon (host,
    /// dry-run, batch 1), beside socket-echo's for a plain round trip.
    func costRows() throws -> [Row] {
        let c = try CostBench(binDirectory: bin).run(repetitions: 3)
        func top(_ calls: [String: Double], errors: [String: Double] = [:], _ k: Int = 4) -> String {
            calls.filter { $0.value >= 0.005 }.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(k).map {
                let e = errors[$0.key] ?? 0
                return "\($0.key) \(format($0.value))" + (e >= 0.005 ? " (\(format(e)) failed)" : "")
            }.joined(separator: ", ")
        }
        let span = "difference of \(CostBench.long) and \(CostBench.short) requests, half maps, half unmaps"
        let allocations = AllocationCounter.functions.compactMap { name in
            c.daemonAllocationsBy[name].flatMap { $0 >= 0.005 ? "\(name) \(format($0))" : nil }
        }.joined(separator: ", ")
        let i = try InstructionBench(binDirectory: bin).run()
        return [
            Row(figure: "daemon instructions per invalidation, batch 1 (host, dry-run; valgrind --tool=callgrind)",
                value: "\(Int(i.daemon.rounded())) instructions",
                reference: "socket-echo's side of a round trip: \(Int(i.floor.rounded())) (\(String(format: "%.1f", i.daemon / i.floor))×); "
                    + "41,183 before issue 14's cuts (a callgrind profile on 2026-12-03); \(span); the kernel's share is not counted",
                goal: "", n: 1),
            Row(figure: "daemon syscalls per invalidation, batch 1 (host, dry-run; strace -f -c -p)", value: stats(c.daemonSyscalls, "calls"),
                reference: "top 4: \(top(c.daemonCalls, errors: c.daemonErrors)); floor (socket-echo's side of a round trip): "
                    + stats(c.floorSyscalls, "calls") + " (\(top(c.floorCalls))); \(span)",
                goal: "", n: c.daemonSyscalls.count),
            Row(figure: "daemon heap allocations per invalidation, batch 1 (host, dry-run; LD_PRELOAD counter)", value: stats(c.daemonAllocations, "allocations"),
                reference: "by function: \(allocations.isEmpty ? "none" : allocations); socket-echo's side of a round trip: "
                    + stats(c.floorAllocations, "allocations") + "; \(span)",
                goal: "", n: c.daemonAllocations.count),
        ]
    }

    static func date() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date())
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
    }
}

struct Row {
    var figure: String
    var value: String
    var reference: String
    var goal: String
    var n: Int
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func format(_ x: Double) -> String {
    if x >= 100 { return String(Int(x.rounded())) }
    if x >= 10 { return String(format: "%.1f", x) }
    return String(format: "%.2f", x)
}

func stats(_ v: [Double], _ unit: String) -> String {
    "\(format(v.min() ?? .nan)) / \(format(median(v))) \(unit)"
}

func ratio(_ x: Double) -> String { String(format: "%.2f", x) }

func render(_ rows: [Row]) -> String {
    var out = "| figure | n | min / median | reference (same run) | goal |\n|---|---|---|---|---|\n"
    for r in rows { out += "| \(r.figure) | \(r.n) | \(r.value) | \(r.reference) | \(r.goal) |\n" }
    return out
}
