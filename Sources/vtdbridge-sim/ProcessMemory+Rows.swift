import Foundation
import ProcessMemory

/// How vm-bench's footprint rows print a process's memory
/// (ProcessMemory reads it).
extension ProcessMemory {
    /// issue 14: "an idle vtdbridged with one attached device uses ≤ 8 MB
    /// RSS". Taken strictly: VmRSS ≤ 8,000,000 bytes (8 MB, not 8 MiB).
    static let goalBytes = 8_000_000

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
