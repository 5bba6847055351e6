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
        for n in [1 << 10, 1 << 16, 1 << 20] {
            let v = sync.pageInvalidation[n]!.map { $0 * 1e6 }
            rows.append(Row(figure: "one page-selective invalidation (remap), \(n) leaves", value: stats(v, "µs"),
                            reference: n == 1 << 10 ? "" : "vs 1K leaves: \(ratio(median(v) / median(sync.pageInvalidation[1 << 10]!.map { $0 * 1e6 })))x",
                            goal: "flat in the space size", n: repetitions))
        }
        rows.append(Row(figure: "shadow memory per mapping at 1M mappings (allocated)", value: stats(sync.bytesPerMapping, "B"),
                        reference: "ShadowEntry stride: \(MemoryLayout<ShadowEntry>.stride) B; RSS growth during the sync: " + stats(sync.rssPerMapping, "B") + " (the sync reuses heap the table writer freed)",
                        goal: (median(sync.bytesPerMapping) <= 32 ? "met" : "MISSED") + " (≤32 B)", n: repetitions))
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
        return [
            Row(figure: "vtdbridged installed size (stripped, static Swift stdlib)", value: mib(f.installedBytes),
                reference: sizeReference, goal: "", n: 1),
            Row(figure: "vtdbridged idle resident memory (VmRSS, started, no device)", value: stats(f.idleRSS.map { $0 / 1024 }, "MiB"),
                reference: "an idle sleep(1): " + stats(f.sleepRSS.map { $0 / 1024 }, "MiB"), goal: "", n: repetitions),
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
