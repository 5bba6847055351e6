import Foundation
import Glibc

/// A process's resident memory as Linux reports it: /proc/PID/status
/// (VmRSS = RssAnon + RssFile + RssShmem, Threads) and
/// /proc/PID/smaps_rollup (Pss, which splits each shared page among the
/// processes mapping it). All in bytes; the kernel prints kB (KiB).
struct ProcessFootprint {
    var vmRSS = 0
    var rssAnon = 0
    var rssFile = 0
    var rssShmem = 0
    var pss = 0
    var threads = 0

    /// issue 14: "an idle vtdbridged with one attached device uses ≤ 8 MB
    /// RSS". Taken strictly: VmRSS ≤ 8,000,000 bytes (8 MB, not 8 MiB).
    static let goalBytes = 8_000_000

    static func of(_ pid: pid_t) throws -> Self {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else {
            throw SimError("cannot read /proc/\(pid)/status (has the process ended?)")
        }
        var f = Self()
        let fields = Self.fields(status)
        guard let rss = fields["VmRSS"] else { throw SimError("/proc/\(pid)/status has no VmRSS") }
        f.vmRSS = rss * 1024
        f.rssAnon = (fields["RssAnon"] ?? 0) * 1024
        f.rssFile = (fields["RssFile"] ?? 0) * 1024
        f.rssShmem = (fields["RssShmem"] ?? 0) * 1024
        f.threads = fields["Threads"] ?? 0
        let rollup = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)).map(Self.fields) ?? [:]
        f.pss = (rollup["Pss"] ?? 0) * 1024
        return f
    }

    /// The leading number of each "Name:   123 kB" line, as printed (kB
    /// for the memory fields, a count for Threads).
    static func fields(_ text: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            // The kernel pads with a tab and spaces ("VmRSS:\t    1234 kB").
            let words = parts[1].split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = words.first, let value = Int(first) else { continue }
            out[String(parts[0])] = value
        }
        return out
    }

    static func mib(_ bytes: Int) -> String { String(format: "%.2f MiB", Double(bytes) / 1_048_576) }

    var text: String {
        "VmRSS \(Self.mib(vmRSS)) (\(String(format: "%.2f", Double(vmRSS) / 1e6)) MB)"
    }

    var breakdown: String {
        "RssAnon \(Self.mib(rssAnon)), RssFile \(Self.mib(rssFile)), RssShmem \(Self.mib(rssShmem)), Pss \(Self.mib(pss)), threads \(threads)"
    }

    var goal: String {
        (vmRSS <= Self.goalBytes ? "met" : "MISSED") + " (VmRSS ≤ 8 MB = 8,000,000 B)"
    }
}
