import Glibc
import Posix

/// The descriptors systemd passes to a service it starts (sd_listen_fds(3)
/// without libsystemd): sockets of its .socket units and, what this daemon
/// uses, the unit's file descriptor store from the previous process.
///
/// They are numbered from 3 (SD_LISTEN_FDS_START) in the order LISTEN_FDNAMES
/// names them, colon-separated. The order is not stable from one start to
/// the next (observed on systemd 252), so callers match by name.
public enum SystemdListenFDs {
    /// SD_LISTEN_FDS_START.
    public static let first: Int32 = 3

    /// One passed descriptor: its FDNAME and its number.
    public struct Passed: Sendable, Equatable {
        public var name: String
        public var number: Int32

        public init(name: String, number: Int32) {
            self.name = name
            self.number = number
        }
    }

    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// What the environment says was passed to process `pid`: nothing when
    /// LISTEN_PID is unset or names another process (the variables were
    /// inherited), an error when they are malformed. Names missing from
    /// LISTEN_FDNAMES are "unknown", as sd_listen_fds_with_names reports.
    public static func parse(_ environment: [String: String], pid: pid_t) throws(Error) -> [Passed] {
        guard let pidText = environment["LISTEN_PID"] else { return [] }
        guard let listenPID = pid_t(pidText) else { throw Error(description: "LISTEN_PID=\(pidText) is not a process id") }
        guard listenPID == pid else { return [] }
        guard let countText = environment["LISTEN_FDS"], let count = Int32(countText), count >= 0, count < 65536 else {
            throw Error(description: "LISTEN_FDS=\(environment["LISTEN_FDS"] ?? "") is not a descriptor count")
        }
        let names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        return (0..<count).map { i in
            Passed(name: Int(i) < names.count && !names[Int(i)].isEmpty ? names[Int(i)] : "unknown", number: first + i)
        }
    }

    /// The variables `parse` reads, from the process environment.
    public static func processEnvironment() -> [String: String] {
        var environment: [String: String] = [:]
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            if let value = getenv(key) { environment[key] = String(cString: value) }
        }
        return environment
    }

    /// Takes what systemd passed to this process: each descriptor owned from
    /// here on and made close-on-exec (systemd passes them without it), and
    /// LISTEN_* removed from the environment so that no child believes they
    /// are its own.
    public static func take() throws(Error) -> [(name: String, descriptor: FileDescriptor)] {
        let passed = try parse(processEnvironment(), pid: getpid())
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(key) }
        var taken: [(name: String, descriptor: FileDescriptor)] = []
        for p in passed {
            do {
                taken.append((p.name, try FileDescriptor.inherited(p.number, subject: "stored descriptor \(p.name)")))
            } catch {
                throw Error(description: "LISTEN_FDS names descriptor \(p.number) (\(p.name)), which is not open: \(error)")
            }
        }
        return taken
    }
}
