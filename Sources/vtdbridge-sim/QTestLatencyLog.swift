import Foundation

/// Round-trip times of guest register stores that make QEMU do work, by
/// what the store was (e.g. "page-selective IOTLB invalidation (IQT write)").
/// The IQT write of a page-selective invalidation is the issue's
/// guest-visible cost of one invalidation: QEMU handles the queue, notifies
/// its IOMMU listeners (a vfio-user server, which must reply) and only then
/// lets the store complete.
final class QTestLatencyLog {
    private(set) var samples: [String: [Duration]] = [:]
    private var order: [String] = []

    func record(_ what: String, _ latency: Duration) {
        if samples[what] == nil { order.append(what) }
        samples[what, default: []].append(latency)
    }

    struct Summary {
        var what: String
        var count: Int
        var p50: Duration
        var p99: Duration
        var max: Duration
    }

    var summaries: [Summary] {
        order.map { what in
            let sorted = samples[what]!.sorted()
            func quantile(_ q: Double) -> Duration { sorted[min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.up)) - 1)] }
            return Summary(what: what, count: sorted.count, p50: quantile(0.5), p99: quantile(0.99), max: sorted.last!)
        }
    }

    static func milliseconds(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
        return String(format: "%.3f ms", ms)
    }

    /// One line per kind of store: count, median, p99 and maximum.
    var lines: [String] {
        summaries.map { s in
            "\(s.what): n=\(s.count) p50=\(Self.milliseconds(s.p50)) p99=\(Self.milliseconds(s.p99)) max=\(Self.milliseconds(s.max))"
        }
    }
}
