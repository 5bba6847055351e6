import Foundation
import Glibc
import UnixIO

/// The three executables, run as processes from the build directory.
enum CLIProcess {
    static func binary(_ name: String) -> URL { Bundle.main.bundleURL.appendingPathComponent(name) }

    /// Runs `name` to completion; output goes through files, so a chatty
    /// tool never blocks on a full pipe.
    static func run(_ name: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let base = NSTemporaryDirectory() + "cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        for file in [base + ".out", base + ".err"] where !FileManager.default.createFile(atPath: file, contents: nil) {
            throw CLITestError("cannot create \(file)")
        }
        defer {
            unlink(base + ".out")
            unlink(base + ".err")
        }
        let p = Process()
        p.executableURL = binary(name)
        p.arguments = arguments
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, try String(contentsOfFile: base + ".out", encoding: .utf8),
                try String(contentsOfFile: base + ".err", encoding: .utf8))
    }
}

struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A real vtdbridged on the dry-run backend, for the commands to talk to.
final class CLIDaemon {
    let directory: String
    let process = Process()
    var eventSocket: String { directory + "/event.sock" }
    var controlSocket: String { directory + "/control.sock" }
    var logPath: String { directory + "/daemon.log" }

    /// `arguments` replace the default command line (then sockets and state
    /// are where they say).
    init(name: String = "vm0", devices: [String] = ["0000:01:00.0=00:03.0"], arguments: [String]? = nil,
         directory: String? = nil, controlSocket: String? = nil) throws {
        self.directory = directory ?? NSTemporaryDirectory() + "vtdbridgectl-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        process.executableURL = CLIProcess.binary("vtdbridged")
        if let arguments {
            process.arguments = arguments
        } else {
            process.arguments = ["--backend", "dry-run", "--name", name, "--event-socket", self.directory + "/event.sock",
                                 "--control-socket", self.directory + "/control.sock", "--state-directory", self.directory + "/state"]
                + devices.flatMap { ["--device", $0] }
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        process.environment = env
        let log = self.directory + "/daemon.log"
        guard FileManager.default.createFile(atPath: log, contents: nil) else { throw CLITestError("cannot create \(log)") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try waitForSocket(controlSocket ?? self.directory + "/control.sock")
    }

    func waitForSocket(_ path: String, timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let c = try? UnixConnection.connect(path: path) {
                c.close()
                return
            }
            guard process.isRunning else {
                throw CLITestError("vtdbridged exited (\(process.terminationStatus)) before listening:\n\(log)")
            }
            usleep(20_000)
        }
        throw CLITestError("vtdbridged did not listen on \(path) within \(timeout) s:\n\(log)")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit status.
    @discardableResult
    func terminate() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
