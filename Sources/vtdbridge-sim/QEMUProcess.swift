import CPosix
import Foundation
import Glibc
import Posix
import UnixIO

/// One QEMU process started for a qtest session, and its qtest connection.
///
/// QEMU's `-qtest unix:PATH` is a chardev in client mode: QEMU connects to a
/// socket the test listens on (as QEMU's own libqtest does), so the test
/// binds first, starts QEMU, and accepts. QEMU's stdout and stderr go to a
/// log file, shown when something fails.
final class QEMUProcess {
    let commandLine: QEMUCommandLine
    let logPath: String
    private(set) var pid: pid_t = 0
    /// How the process ended, once it has been reaped.
    private(set) var exitStatus: Int32?
    let qtest: QTestClient

    /// Starts QEMU and waits (up to `timeout`) for it to connect to `listener`.
    init(_ commandLine: QEMUCommandLine, listener: UnixListener, logPath: String, timeout: Duration = .seconds(30)) throws {
        self.commandLine = commandLine
        self.logPath = logPath
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw SimError("creating \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        var cargs = commandLine.arguments.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let result = cposix_spawn_restricted(commandLine.binary, &cargs, -1, -1, UInt64.max, log)
        guard result > 0 else { throw SimError("starting \(commandLine.binary): \(String(cString: strerror(-result)))") }
        let child = pid_t(result)
        pid = child

        let deadline = ContinuousClock.now + timeout
        var accepted: UnixConnection?
        while accepted == nil {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                pid = 0
                var hint = ""
                if Self.tail(logPath).contains("invalid accelerator qtest") {
                    hint = "\n(this QEMU has no qtest accelerator; Debian's QEMU 7.2 packages ship no accel-qtest module: use --accel tcg)"
                }
                throw SimError("QEMU exited (\(Self.describe(status))) before connecting to its qtest socket:\n\(Self.tail(logPath))\(hint)")
            }
            guard ContinuousClock.now < deadline else {
                Glibc.kill(child, SIGKILL)
                waitpid(child, &status, 0)
                pid = 0
                throw SimError("QEMU did not connect to \(listener.path) within \(timeout):\n\(Self.tail(logPath))")
            }
            var entry = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            _ = cposix_poll(&entry, 1, 100)
            do {
                accepted = try listener.accept(nonBlocking: true)
            } catch {
                Glibc.kill(child, SIGKILL)
                waitpid(child, &status, 0)
                pid = 0
                throw error
            }
        }
        qtest = try QTestClient(connection: accepted!)
        qtest.describePeer = { [weak self] in
            guard let self else { return "" }
            // The connection closes a moment before the process is gone
            // (QEMU failing to realize a device exits after qtest is up).
            let deadline = ContinuousClock.now + .seconds(2)
            while isRunning && ContinuousClock.now < deadline { usleep(20_000) }
            return condition
        }
    }

    /// Whether the process is still there (reaps it if it has ended).
    var isRunning: Bool {
        guard pid > 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exitStatus = status
            pid = 0
            return false
        }
        return true
    }

    /// "QEMU pid N is running" or how it ended, with its last log lines.
    var condition: String {
        if isRunning { return "QEMU pid \(pid) is still running; its log: \(logPath)" }
        let how = exitStatus.map(Self.describe) ?? "ended"
        return "QEMU \(how); last lines of \(logPath):\n\(Self.tail(logPath))"
    }

    /// SIGKILL, as a crash or the OOM killer would; returns the wait status.
    @discardableResult
    func kill() -> Int32? {
        guard pid > 0 else { return exitStatus }
        qtest.close()
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        exitStatus = status
        pid = 0
        return status
    }

    /// SIGTERM (QEMU exits cleanly on it), then SIGKILL after 10 s.
    func stop() {
        guard pid > 0 else { return }
        qtest.close()
        Glibc.kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(10)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) != pid {
            if ContinuousClock.now > deadline {
                Glibc.kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            usleep(20_000)
        }
        exitStatus = status
        pid = 0
    }

    static func describe(_ status: Int32) -> String {
        // WIFSIGNALED / WTERMSIG / WEXITSTATUS, spelled out: Swift does not
        // import the macros.
        let signal = status & 0x7f
        if signal != 0 && signal != 0x7f { return "killed by signal \(signal)" }
        return "exited with status \((status >> 8) & 0xff)"
    }

    static func tail(_ path: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Lines of QEMU's log, for checks on what QEMU reported.
    var logText: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}
