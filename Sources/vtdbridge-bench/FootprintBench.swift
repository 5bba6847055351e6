import Foundation
import Glibc

/// What vtdbridged costs a host before it does anything: the size of the
/// binary `make install` puts in place (stripped, as the Makefile does), and
/// the resident memory of a started, idle daemon. Each beside a reference
/// measured the same way in the same run.
struct FootprintBench {
    let binDirectory: String

    struct Result {
        var installedBytes: Int
        var builtBytes: Int
        /// systemd's PID 1 binary plus the private library holding its code.
        var systemdBytes: Int?
        var idleRSS: [Double]
        var sleepRSS: [Double]
    }

    func run(repetitions: Int) throws -> Result {
        let scratch = NSTemporaryDirectory() + "vtdbridge-footprint-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let built = binDirectory + "/vtdbridged"
        let installed = scratch + "/vtdbridged"
        try Self.runToEnd("/usr/bin/env", ["strip", "--strip-unneeded", "-o", installed, built])
        let systemd = ["/lib/systemd/systemd", "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"]
        let systemdBytes = systemd.allSatisfy { FileManager.default.fileExists(atPath: $0) } ? systemd.map(Self.size).reduce(0, +) : nil

        var idle: [Double] = []
        var sleeping: [Double] = []
        for i in 0..<repetitions {
            let dir = scratch + "/run\(i)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            idle.append(try Self.idleRSS(installed, ["--backend", "dry-run", "--name", "bench", "--log-level", "warning",
                                                      "--event-socket", dir + "/event.sock", "--control-socket", dir + "/control.sock",
                                                      "--state-directory", dir + "/state"],
                                         ready: { FileManager.default.fileExists(atPath: dir + "/control.sock") }))
            sleeping.append(try Self.idleRSS("/bin/sleep", ["600"], ready: { true }))
        }
        return Result(installedBytes: Self.size(installed), builtBytes: Self.size(built), systemdBytes: systemdBytes,
                      idleRSS: idle, sleepRSS: sleeping)
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    /// Starts the program, waits until it is ready and one more second (for
    /// what a start allocates lazily), reads VmRSS from /proc/PID/status in
    /// KiB, and stops it.
    static func idleRSS(_ program: String, _ arguments: [String], ready: () -> Bool) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(20)
        while !ready() {
            guard Date() < deadline, process.isRunning else { throw BenchError("\(program) did not start") }
            usleep(10_000)
        }
        sleep(1)
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { throw BenchError("no VmRSS for \(program)") }
        return kib
    }

    static func runToEnd(_ program: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError("\(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    }
}
