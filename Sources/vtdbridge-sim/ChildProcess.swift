import CPosix
import Foundation
import Glibc

/// A helper process the benchmark starts (this binary's `vfio-user-stub` or
/// `socket-echo`), with its stdout and stderr in a log file, stopped with
/// SIGTERM and reaped.
final class ChildProcess {
    let arguments: [String]
    let logPath: String
    private(set) var pid: pid_t = 0

    init(_ arguments: [String], logPath: String) throws {
        self.arguments = arguments
        self.logPath = logPath
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw SimError("creating \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        var cargs = arguments.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let result = cposix_spawn_restricted(arguments[0], &cargs, -1, -1, UInt64.max, log)
        guard result > 0 else { throw SimError("starting \(arguments[0]): \(String(cString: strerror(-result)))") }
        pid = pid_t(result)
    }

    /// This executable, to start its own subcommands.
    static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Whether it still runs (reaps it if it has ended).
    var isRunning: Bool {
        guard pid > 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            pid = 0
            return false
        }
        return true
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until `path` exists (the child created its socket), or fails
    /// with the child's log if it ended or `timeout` passed first.
    func waitForFile(_ path: String, timeout: Duration = .seconds(30)) throws {
        let deadline = ContinuousClock.now + timeout
        while access(path, F_OK) != 0 {
            guard isRunning else { throw SimError("\(arguments.joined(separator: " ")) ended before creating \(path):\n\(log)") }
            guard ContinuousClock.now < deadline else { throw SimError("\(arguments.joined(separator: " ")) did not create \(path) within \(timeout):\n\(log)") }
            usleep(20_000)
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(10)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) != pid {
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            usleep(10_000)
        }
        pid = 0
    }

    deinit { stop() }
}
