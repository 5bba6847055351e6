import Foundation
import Glibc

/// One vtdbridged on the dry-run backend in a scratch directory, started the
/// way the host benches need it: optionally with one device (00:03.0 in the
/// guest, as StreamBench attaches it) and extra environment (LD_PRELOAD).
/// `init` returns once the control socket exists: the daemon binds it in
/// `start()` and sends READY=1 right after (Daemon.swift, `run`).
final class BenchDaemon {
    let process = Process()
    let directory: String

    static let device = "0000:01:00.0=00:03.0"

    /// `wrapper`: a command the daemon runs under (valgrind for the
    /// instruction counts), which may take a while to start it.
    init(program: String, directory: String, withDevice: Bool, environment: [String: String] = [:], wrapper: [String] = []) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var arguments = ["--backend", "dry-run", "--name", "bench", "--log-level", "warning",
                         "--event-socket", directory + "/event.sock", "--control-socket", directory + "/control.sock",
                         "--state-directory", directory + "/state"]
        if withDevice { arguments += ["--device", Self.device] }
        if let tool = wrapper.first {
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = Array(wrapper.dropFirst()) + [program] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        // Only what the daemon needs: no NOTIFY_SOCKET, so that it sends
        // no STATUS= (which would add sockets, allocations and instructions).
        var env = ProcessInfo.processInfo.environment.filter { $0.key != "NOTIFY_SOCKET" && $0.key != "WATCHDOG_USEC" }
        env.merge(environment) { $1 }
        process.environment = env
        try process.run()
        let deadline = Date().addingTimeInterval(wrapper.isEmpty ? 20 : 180)
        while !FileManager.default.fileExists(atPath: directory + "/control.sock") {
            guard Date() < deadline, process.isRunning else {
                stop()
                throw BenchError("\(program) did not start")
            }
            usleep(10_000)
        }
    }

    var pid: pid_t { process.processIdentifier }

    func stop() {
        if process.isRunning { kill(pid, SIGTERM) }
        process.waitUntilExit()
    }

    /// `vtdbridge-sim load` against this daemon's device; its JSON object.
    func load(sim: String, count: Int, batch: Int) throws -> [String: Any] {
        let run = Process()
        run.executableURL = URL(fileURLWithPath: sim)
        run.arguments = ["load", "--event-socket", directory + "/event.sock", "--control-socket", directory + "/control.sock",
                         "--device", "00:03.0", "--count", String(count), "--batch", String(batch), "--json", "--ram", "128M"]
        let pipe = Pipe()
        run.standardOutput = pipe
        try run.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        run.waitUntilExit()
        guard run.terminationStatus == 0, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BenchError("vtdbridge-sim load (count \(count), batch \(batch)) failed: \(String(decoding: data, as: UTF8.self))")
        }
        return object
    }
}
