import Foundation
import VTdBridgeTestSupport
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
    let daemon: DaemonProcess
    var directory: String { daemon.directory }
    var process: Process { daemon.process }
    var eventSocket: String { directory + "/event.sock" }
    var controlSocket: String { directory + "/control.sock" }
    var logPath: String { daemon.logPath }

    /// `arguments` replace the default command line (then sockets and state
    /// are where they say).
    init(name: String = "vm0", devices: [String] = ["0000:01:00.0=00:03.0"], arguments: [String]? = nil,
         directory: String? = nil, controlSocket: String? = nil) throws {
        let directory = directory ?? DaemonProcess.temporaryDirectory(prefix: "vtdbridgectl")
        let defaults = ["--backend", "dry-run", "--name", name, "--event-socket", directory + "/event.sock",
                        "--control-socket", directory + "/control.sock", "--state-directory", directory + "/state"]
            + devices.flatMap { ["--device", $0] }
        daemon = try DaemonProcess(executable: CLIProcess.binary("vtdbridged"), arguments: arguments ?? defaults, directory: directory)
        try waitForSocket(controlSocket ?? directory + "/control.sock")
    }

    func waitForSocket(_ path: String, timeout: Double = 20) throws { try daemon.waitForSocket(path, timeout: timeout) }

    var log: String { daemon.log }

    /// SIGTERM, then the exit status.
    @discardableResult
    func terminate() -> Int32 { daemon.terminate() }
}
