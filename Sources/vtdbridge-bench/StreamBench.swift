import Foundation
import Glibc

/// The invalidation stream through a real daemon (dry-run backend): the
/// simulator's load mode, 100,000 page-selective invalidations in batches.
struct StreamBench {
    let binDirectory: String

    func run(batch: Int, count: Int) throws -> Double {
        let dir = NSTemporaryDirectory() + "vtdbridge-bench-\(getpid())-\(batch)"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try BenchDaemon(program: binDirectory + "/vtdbridged", directory: dir, withDevice: true)
        defer { daemon.stop() }
        let result = try daemon.load(sim: binDirectory + "/vtdbridge-sim", count: count, batch: batch)
        guard let rate = result["per_second"] as? Double else {
            throw BenchError("vtdbridge-sim load (batch \(batch)) printed no per_second: \(result)")
        }
        return rate
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
