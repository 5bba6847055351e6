import Foundation
import Glibc

/// What one invalidation costs the daemon in instructions, on the host with
/// the dry-run backend, batch 1, counted by valgrind's callgrind: the figure
/// that says what a request costs a real CPU, where the test VM's emulated
/// one multiplies everything (BENCHMARKS.md, issue 14).
///
/// As CostBench does, each count is the difference of two whole runs of
/// `long` and `short` requests, divided by their difference: start,
/// HELLO, attach and exit cancel out. The floor is socket-echo counted the
/// same way: its side of a plain round trip of the same sizes.
///
/// Valgrind 3.19 (bookworm) cannot read the DWARF 5 debug information of a
/// Swift 6 binary and gives up, so both programs run from copies with their
/// debug sections stripped (the symbol table stays).
struct InstructionBench {
    let binDirectory: String

    static let short = CostBench.short
    static let long = CostBench.long

    struct Figures {
        var daemon: Double
        var floor: Double
    }

    func run() throws -> Figures {
        let scratch = NSTemporaryDirectory() + "vtdbridge-instructions-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let daemon = try Self.stripped(binDirectory + "/vtdbridged", into: scratch)
        let sim = try Self.stripped(binDirectory + "/vtdbridge-sim", into: scratch)
        let requests = Double(Self.long - Self.short)
        let d = try daemonRun(daemon, count: Self.long, directory: scratch + "/dl")
            - daemonRun(daemon, count: Self.short, directory: scratch + "/ds")
        let e = try echoRun(sim, count: Self.long, directory: scratch + "/el")
            - echoRun(sim, count: Self.short, directory: scratch + "/es")
        return Figures(daemon: Double(d) / requests, floor: Double(e) / requests)
    }

    static func callgrind(_ output: String) -> [String] {
        ["/usr/bin/env", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + output, "--log-file=" + output + ".log"]
    }

    func daemonRun(_ program: String, count: Int, directory: String) throws -> Int {
        let output = directory + ".callgrind"
        let daemon = try BenchDaemon(program: program, directory: directory, withDevice: true, wrapper: Self.callgrind(output))
        let result = try daemon.load(sim: binDirectory + "/vtdbridge-sim", count: count, batch: 1)
        daemon.stop()
        guard (result["invalidations"] as? Int) == count else { throw BenchError("vtdbridge-sim load did not send \(count)") }
        return try Self.total(output)
    }

    /// `count` round trips with socket-echo under callgrind; it exits at
    /// the end of the stream, which is when callgrind writes its counts.
    func echoRun(_ sim: String, count: Int, directory: String) throws -> Int {
        let path = directory + ".sock"
        let output = directory + ".callgrind"
        let listener = try CostBench.listen(path)
        defer { close(listener) }
        let echo = Process()
        let command = Self.callgrind(output) + [sim, "socket-echo", "--socket", path, "--request-size", "56", "--reply-size", "48"]
        echo.executableURL = URL(fileURLWithPath: command[0])
        echo.arguments = Array(command.dropFirst())
        echo.standardError = FileHandle.nullDevice
        try echo.run()
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else {
            echo.terminate()
            throw BenchError("accept for socket-echo under valgrind: errno \(errno)")
        }
        do {
            try CostBench.roundTrips(count, over: connection)
        } catch {
            close(connection)
            throw error
        }
        close(connection)
        echo.waitUntilExit()
        guard echo.terminationReason == .exit, echo.terminationStatus == 0 else {
            throw BenchError("socket-echo under valgrind ended with status \(echo.terminationStatus); see \(output).log")
        }
        return try Self.total(output)
    }

    /// The run's instruction total: callgrind's `totals:` (or `summary:`) line.
    static func total(_ file: String) throws -> Int {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            let log = (try? String(contentsOfFile: file + ".log", encoding: .utf8)) ?? ""
            throw BenchError("callgrind wrote no \(file): is valgrind installed (make bench installs it)?\n\(log.suffix(600))")
        }
        for line in text.split(separator: "\n").reversed() where line.hasPrefix("totals:") || line.hasPrefix("summary:") {
            if let value = line.split(separator: " ").last.flatMap({ Int($0) }) { return value }
        }
        throw BenchError("no totals line in \(file)")
    }

    /// A copy of `program` without its debug sections, in `directory`.
    static func stripped(_ program: String, into directory: String) throws -> String {
        let copy = directory + "/" + URL(fileURLWithPath: program).lastPathComponent
        let strip = Process()
        strip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        strip.arguments = ["strip", "--strip-debug", "-o", copy, program]
        try strip.run()
        strip.waitUntilExit()
        guard strip.terminationStatus == 0 else { throw BenchError("strip --strip-debug \(program) failed") }
        return copy
    }
}
