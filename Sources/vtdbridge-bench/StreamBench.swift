import Foundation
import Glibc

/// The invalidation stream through a real daemon (dry-run backend): the
/// simulator's load mode, 100,000 page-selective invalidations in batches.
struct StreamBench {
    let binDirectory: String

    func run(batch: Int, count: Int) throws -> Double {
        let dir = NSTemporaryDirectory() + "vtdbridge-bench-\(getpid())-\(batch)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: binDirectory + "/vtdbridged")
        daemon.arguments = ["--backend", "dry-run", "--name", "bench", "--event-socket", dir + "/event.sock",
                            "--control-socket", dir + "/control.sock", "--state-directory", dir + "/state",
                            "--log-level", "warning", "--device", "0000:01:00.0=00:03.0"]
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: dir + "/control.sock") { usleep(10_000) }
        let sim = Process()
        sim.executableURL = URL(fileURLWithPath: binDirectory + "/vtdbridge-sim")
        sim.arguments = ["load", "--event-socket", dir + "/event.sock", "--control-socket", dir + "/control.sock",
                         "--device", "00:03.0", "--count", String(count), "--batch", String(batch), "--json", "--ram", "128M"]
        let pipe = Pipe()
        sim.standardOutput = pipe
        try sim.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        sim.waitUntilExit()
        guard sim.terminationStatus == 0,
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let rate = object["per_second"] as? Double else {
            throw BenchError("vtdbridge-sim load (batch \(batch)) failed: \(String(decoding: data, as: UTF8.self))")
        }
        return rate
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
