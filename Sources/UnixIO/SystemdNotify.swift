import Glibc
import Posix

/// sd_notify(3) without libsystemd: one datagram with "KEY=VALUE" lines to
/// the socket systemd names in $NOTIFY_SOCKET (Type=notify services), plus
/// the watchdog interval from $WATCHDOG_USEC.
///
/// Every function takes the environment as a dictionary so tests can pass
/// their own; the default reads only the variables it needs with getenv(3),
/// without Foundation.
public enum SystemdNotify {
    /// The variables these functions read, from the process environment.
    public static func processEnvironment() -> [String: String] {
        var environment: [String: String] = [:]
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(key) {
                environment[key] = String(cString: value)
            }
        }
        return environment
    }

    /// Sends `state` ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1",
    /// several separated by "\n"). Returns true if it was sent; false if
    /// NOTIFY_SOCKET is unset (not running under systemd: nothing to do) or
    /// the send failed, which callers cannot do anything about either.
    @discardableResult
    public static func send(_ state: String, environment: [String: String] = processEnvironment()) -> Bool {
        (try? notify(state, environment: environment)) ?? false
    }

    /// As `send`, but a failure is thrown instead of folded into false.
    /// Returns false only when NOTIFY_SOCKET is unset or empty.
    public static func notify(_ state: String, environment: [String: String] = processEnvironment()) throws(SystemError) -> Bool {
        guard let target = environment["NOTIFY_SOCKET"], !target.isEmpty else { return false }
        // A path or an abstract name; systemd 253+ may also hand out
        // "vsock:..." addresses, which only VMs use.
        guard target.hasPrefix("/") || target.hasPrefix("@") else {
            throw SystemError(call: "sendto", errno: EAFNOSUPPORT, subject: "NOTIFY_SOCKET=\(target)",
                              detail: "only paths and @abstract names are supported")
        }
        let socket = try FileDescriptor.unixSocket(.datagram, subject: "NOTIFY_SOCKET=\(target)")
        let datagram = Array(state.utf8)
        let sent = try datagram.withUnsafeBytes { raw in
            Result { () throws(SystemError) -> Int in
                try socket.sendDatagram(raw, toUnixAddress: target)
            }
        }.get()
        // A close error after a datagram has gone changes nothing for it.
        try? socket.close()
        // A datagram goes whole or not at all.
        return sent == datagram.count
    }

    /// Sends `state` with `descriptors` attached (SCM_RIGHTS): what
    /// "FDSTORE=1" needs, with "FDNAME=" naming them (sd_pid_notify_with_fds).
    /// systemd keeps duplicates in the unit's file descriptor store
    /// (FileDescriptorStoreMax=) and passes them to the next process of the
    /// unit as LISTEN_FDS. Returns false only when NOTIFY_SOCKET is unset.
    public static func notify(_ state: String, descriptors: [FileDescriptor],
                              environment: [String: String] = processEnvironment()) throws(SystemError) -> Bool {
        guard !descriptors.isEmpty else { return try notify(state, environment: environment) }
        guard let target = environment["NOTIFY_SOCKET"], !target.isEmpty else { return false }
        guard target.hasPrefix("/") || target.hasPrefix("@") else {
            throw SystemError(call: "sendmsg", errno: EAFNOSUPPORT, subject: "NOTIFY_SOCKET=\(target)",
                              detail: "only paths and @abstract names are supported")
        }
        let socket = try FileDescriptor.unixSocket(.datagram, subject: "NOTIFY_SOCKET=\(target)")
        try socket.connect(unixAddress: target)
        let datagram = Array(state.utf8)
        let sent = try datagram.withUnsafeBytes { raw in
            Result { () throws(SystemError) -> Int? in try socket.sendMessage(raw, fds: descriptors) }
        }.get()
        try? socket.close()
        return sent == datagram.count
    }

    /// How often systemd expects "WATCHDOG=1" to arrive at the latest
    /// (WatchdogSec=), or nil if the watchdog is off for this process: unset,
    /// zero or malformed WATCHDOG_USEC, or a WATCHDOG_PID naming another
    /// process (the variable was inherited from a parent). Send at about
    /// half this interval.
    public static func watchdogInterval(environment: [String: String] = processEnvironment()) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else {
            return nil
        }
        if let pidText = environment["WATCHDOG_PID"] {
            guard let pid = pid_t(pidText), pid == getpid() else { return nil }
        }
        // Duration counts in Int64 seconds; a value past that is not a real setting.
        guard microseconds <= UInt64(Int64.max) else { return nil }
        return .microseconds(Int64(microseconds))
    }
}
