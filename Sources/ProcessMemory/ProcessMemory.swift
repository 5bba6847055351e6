import Glibc

/// A process's memory as Linux reports it, for the benchmarks' footprint
/// rows (vtdbridge-bench on the host, vtdbridge-sim in the VM): from
/// /proc/PID/status, VmRSS (= RssAnon + RssFile + RssShmem) and Threads;
/// from /proc/PID/smaps_rollup, Pss (each shared page divided among the
/// processes that map it) and Private_Clean + Private_Dirty (pages no other
/// process maps: what one more such process adds to a host). Sizes in
/// bytes; the kernel prints kB, meaning KiB.
public struct ProcessMemory: Sendable {
    public var vmRSS = 0
    public var rssAnon = 0
    public var rssFile = 0
    public var rssShmem = 0
    public var pss = 0
    public var privateBytes = 0
    public var threads = 0

    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads both files now. VmRSS must be there (the process is alive and
    /// is not a kernel thread); smaps_rollup's fields are 0 if it cannot be
    /// read (it needs the same ptrace access as /proc/PID/smaps).
    public static func of(_ pid: pid_t) throws(Unreadable) -> ProcessMemory {
        guard let status = read("/proc/\(pid)/status") else {
            throw Unreadable(description: "cannot read /proc/\(pid)/status (has the process ended?)")
        }
        let fields = Self.fields(status)
        guard let rss = fields["VmRSS"] else { throw Unreadable(description: "/proc/\(pid)/status has no VmRSS") }
        let rollup = read("/proc/\(pid)/smaps_rollup").map(Self.fields) ?? [:]
        return ProcessMemory(vmRSS: rss * 1024, rssAnon: (fields["RssAnon"] ?? 0) * 1024,
                             rssFile: (fields["RssFile"] ?? 0) * 1024, rssShmem: (fields["RssShmem"] ?? 0) * 1024,
                             pss: (rollup["Pss"] ?? 0) * 1024,
                             privateBytes: ((rollup["Private_Clean"] ?? 0) + (rollup["Private_Dirty"] ?? 0)) * 1024,
                             threads: fields["Threads"] ?? 0)
    }

    /// The leading number of each "Name:   123 kB" line, as printed (kB
    /// for the memory fields, a count for Threads).
    public static func fields(_ text: String) -> [String: Int] {
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

    /// A whole /proc file (its size is not known in advance: read to EOF).
    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }
}
