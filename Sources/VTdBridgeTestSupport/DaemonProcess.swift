import Foundation
import Glibc
import UnixIO

/// A real vtdbridged (or any daemon) process for process-level tests: its
/// output in a log file, started and waited for until it listens, stopped
/// by a signal and reaped exactly once. The daemon tests' harness and the
/// CLI tests' daemon are both built on it.
public final class DaemonProcess {
    public let process = Process()
    public let logPath: String
    /// Removed with everything in it when this is released.
    public let directory: String

    /// Starts `executable` with `arguments`, in the environment of the test
    /// run minus NOTIFY_SOCKET (a test runner under systemd must not have
    /// its daemons talk to PID 1) plus `environment`.
    public init(executable: URL, arguments: [String], environment: [String: String] = [:], directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        logPath = directory + "/daemon.log"
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else { throw DaemonProcessError("cannot create \(logPath)") }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// A fresh directory name under the temporary directory.
    public static func temporaryDirectory(prefix: String) -> String {
        NSTemporaryDirectory() + "\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Returns once `path` accepts a connection; throws, with the log, if
    /// the process exits first or `timeout` passes.
    public func waitForSocket(_ path: String, timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let c = try? UnixConnection.connect(path: path) {
                c.close()
                return
            }
            guard process.isRunning else {
                throw DaemonProcessError("\(process.executableURL?.lastPathComponent ?? "daemon") exited (\(process.terminationStatus)) before listening:\n\(log)")
            }
            usleep(20_000)
        }
        throw DaemonProcessError("\(process.executableURL?.lastPathComponent ?? "daemon") did not listen on \(path) within \(timeout) s:\n\(log)")
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits; the exit status, or -1 if the process had
    /// to be killed after `timeout`.
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        guard process.isRunning else {
            process.waitUntilExit()
            return process.terminationStatus
        }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        // Foundation's Process keeps itself alive until someone waits
        // (LeakSanitizer saw one per daemon); it has exited, so this returns.
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

public struct DaemonProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
