import Foundation
import Glibc

/// Context switches of a process or thread (Linux counts them per task): a
/// voluntary one is a sleep (a blocking recvmsg or poll that had to wait,
/// so one wake-up later), a nonvoluntary one a preemption. Per request they
/// say how many wake-ups a round trip costs, and whether a process was
/// preempted mid-request (issue 14's breakdown).
struct ContextSwitches {
    var voluntary: Int = 0
    var nonvoluntary: Int = 0

    static func - (a: Self, b: Self) -> Self {
        Self(voluntary: a.voluntary - b.voluntary, nonvoluntary: a.nonvoluntary - b.nonvoluntary)
    }

    static func + (a: Self, b: Self) -> Self {
        Self(voluntary: a.voluntary + b.voluntary, nonvoluntary: a.nonvoluntary + b.nonvoluntary)
    }

    /// All threads of process `pid`, summed from /proc/PID/task/*/status
    /// (/proc/PID/status counts only the thread-group leader). A thread that
    /// ended between two reads takes its counts with it; the daemon's
    /// threads live as long as it does.
    static func ofProcess(_ pid: pid_t) -> Self {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(Self()) { sum, tid in sum + parse(path: "/proc/\(pid)/task/\(tid)/status") }
    }

    /// RUSAGE_THREAD (Linux 2.6.26, <bits/resource.h>): glibc declares it
    /// only under _GNU_SOURCE, which Swift's Glibc module is not built with.
    static let rusageThread: Int32 = 1

    /// The calling thread, by getrusage(RUSAGE_THREAD): one system call and
    /// no file, cheap enough to take around each request of a timed loop.
    static func ofThisThread() -> Self {
        var usage = rusage()
        guard getrusage(Self.rusageThread, &usage) == 0 else { return Self() }
        return Self(voluntary: usage.ru_nvcsw, nonvoluntary: usage.ru_nivcsw)
    }

    static func parse(path: String) -> Self {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return Self() }
        var result = Self()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: .whitespaces)) else { continue }
            switch parts[0] {
            case "voluntary_ctxt_switches": result.voluntary = value
            case "nonvoluntary_ctxt_switches": result.nonvoluntary = value
            default: break
            }
        }
        return result
    }

    /// "1.02 + 0.01" per request: voluntary (sleeps) + nonvoluntary (preemptions).
    func perRequest(_ requests: Int) -> String {
        guard requests > 0 else { return "n/a" }
        return String(format: "%.2f + %.2f", Double(voluntary) / Double(requests), Double(nonvoluntary) / Double(requests))
    }
}
