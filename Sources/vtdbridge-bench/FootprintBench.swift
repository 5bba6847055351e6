import Foundation
import Glibc
import ProcessMemory

/// What vtdbridged costs a host before it does anything: the size of the
/// binary `make install` puts in place (stripped, as the Makefile does), and
/// the resident memory of a started, idle daemon. Each beside a reference
/// measured the same way in the same run.
struct FootprintBench {
    let binDirectory: String

    /// Resident memory of one process (/proc; sizes in bytes).
    typealias Memory = ProcessMemory

    struct Result {
        var installedBytes: Int
        var builtBytes: Int
        /// systemd's PID 1 binary plus the private library holding its code.
        var systemdBytes: Int?
        var idle: [Memory] = []
        var oneDevice: [Memory] = []
        /// One device, after `invalidations` page maps and unmaps went through.
        var afterStream: [Memory] = []
        var sleeping: [Memory] = []
        /// `crowdSize` daemons, one device each, all running at once: what
        /// a host with one daemon per VM pays per daemon.
        var crowd: [Memory] = []
    }

    /// Daemons started side by side for the per-daemon figure.
    static let crowdSize = 10

    /// Invalidations the "after a stream" figure sends first: as many as
    /// a vfio device's mapping journal logs before it compacts. (The
    /// dry-run backend keeps no journal, so here it shows what the walk,
    /// the shadow and the session leave resident.)
    static let invalidations = 65_536

    func run(repetitions: Int) throws -> Result {
        let scratch = NSTemporaryDirectory() + "vtdbridge-footprint-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let built = binDirectory + "/vtdbridged"
        let installed = scratch + "/vtdbridged"
        try Self.runToEnd("/usr/bin/env", ["strip", "--strip-unneeded", "-o", installed, built])
        let systemd = ["/lib/systemd/systemd", "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"]
        let systemdBytes = systemd.allSatisfy { FileManager.default.fileExists(atPath: $0) } ? systemd.map(Self.size).reduce(0, +) : nil

        var result = Result(installedBytes: Self.size(installed), builtBytes: Self.size(built), systemdBytes: systemdBytes)
        for i in 0..<repetitions {
            result.idle.append(try Self.idle(installed, directory: scratch + "/idle\(i)", withDevice: false))
            result.oneDevice.append(try Self.idle(installed, directory: scratch + "/device\(i)", withDevice: true))
            result.afterStream.append(try Self.idle(installed, directory: scratch + "/stream\(i)", withDevice: true) { daemon in
                _ = try daemon.load(sim: binDirectory + "/vtdbridge-sim", count: Self.invalidations, batch: 64)
            })
            result.sleeping.append(try Self.sleeping())
        }
        var crowd: [BenchDaemon] = []
        defer { for daemon in crowd { daemon.stop() } }
        for i in 0..<Self.crowdSize {
            crowd.append(try BenchDaemon(program: installed, directory: scratch + "/crowd\(i)", withDevice: true))
        }
        sleep(1)
        result.crowd = try crowd.map { try Memory.of($0.pid) }
        return result
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    /// Starts the daemon, waits until it is ready, runs `traffic`, waits one
    /// more second (for what a start or a stream allocates lazily), reads
    /// its memory, and stops it.
    static func idle(_ program: String, directory: String, withDevice: Bool,
                     traffic: (BenchDaemon) throws -> Void = { _ in }) throws -> Memory {
        let daemon = try BenchDaemon(program: program, directory: directory, withDevice: withDevice)
        defer { daemon.stop() }
        try traffic(daemon)
        sleep(1)
        return try Memory.of(daemon.pid)
    }

    /// The reference: an idle sleep(1), read the same way.
    static func sleeping() throws -> Memory {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["600"]
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        sleep(1)
        return try Memory.of(process.processIdentifier)
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
