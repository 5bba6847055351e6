import CPosix
import Foundation
import Glibc
import UnixIO
import VTdBridgeClient

/// Starts, kills and restarts a vtdbridged process for the in-VM tests, as
/// systemd would on the host.
final class DaemonSupervisor {
    let binary: String
    let name: String
    let directory: String
    let uid: Int?
    let memlockBytes: UInt64?
    private(set) var pid: pid_t = 0
    var eventSocket: String { directory + "/event.sock" }
    var controlSocket: String { directory + "/control.sock" }
    var logPath: String { directory + "/daemon.log" }

    init(binary: String, name: String, directory: String, uid: Int? = nil, memlockBytes: UInt64? = nil) {
        self.binary = binary
        self.name = name
        self.directory = directory
        self.uid = uid
        self.memlockBytes = memlockBytes
    }

    /// Starts the daemon (vfio backend) and waits for its control socket.
    func start(extra: [String] = []) throws {
        mkdir(directory, 0o755)
        if let uid { chown(directory, uid_t(uid), gid_t(uid)) }
        let args = [binary, "--backend", "vfio", "--name", name, "--event-socket", eventSocket,
                    "--control-socket", controlSocket, "--state-directory", directory + "/state", "--log-level", "info"] + extra
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { if log >= 0 { close(log) } }
        var cargs = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let result = cposix_spawn_restricted(binary, &cargs, uid.map { Int($0) } ?? -1, uid.map { Int($0) } ?? -1,
                                              memlockBytes ?? UInt64.max, log)
        guard result > 0 else { throw SimError("starting \(binary): \(String(cString: strerror(-result)))") }
        pid = pid_t(result)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let c = try? UnixConnection.connect(path: controlSocket) {
                c.close()
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw SimError("vtdbridged exited (status \(status)) before listening:\n\(self.log)")
            }
            usleep(20_000)
        }
        throw SimError("vtdbridged did not listen within 30 s:\n\(log)")
    }

    /// SIGKILL: no cleanup, as in a crash.
    func kill() {
        guard pid > 0 else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard pid > 0 else { return -1 }
        Glibc.kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
        return (status >> 8) & 0xff
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}
