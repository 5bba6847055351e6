import Glibc
import Posix

/// A listening Unix stream socket at a path, non-blocking and close-on-exec,
/// that removes its own socket file when closed and never anyone else's.
///
/// The parent directory must exist: creating it (with its permissions) is
/// the service manager's job (systemd RuntimeDirectory=).
public final class UnixListener: Sendable {
    /// The socket's path.
    public let path: String
    private let descriptor: FileDescriptor
    /// The socket file as bound, so `close()` can tell it from a file
    /// someone else has put at the same path since.
    private let identity: FileIdentity

    /// The listening socket's number, to poll for readability; -1 once closed.
    public var fd: Int32 { descriptor.number }

    private init(path: String, descriptor: FileDescriptor, identity: FileIdentity) {
        self.path = path
        self.descriptor = descriptor
        self.identity = identity
    }

    /// Binds and listens at `path`, then sets its mode and, if given, its
    /// group before any client can connect.
    ///
    /// What may already be at `path`:
    /// - nothing: bind.
    /// - a socket nobody listens on (connect is refused): the leftover of a
    ///   daemon that crashed; it is removed and replaced.
    /// - a socket somebody listens on: throws EADDRINUSE (call "bind", detail
    ///   "another daemon is listening on PATH"); the file is left alone.
    /// - anything else (a file, a directory, a symbolic link): throws EEXIST
    ///   and leaves it alone. Only sockets are ours to replace.
    ///
    /// The probe that tells a live socket from a stale one is a connect(2):
    /// a live daemon sees it as a connection that closes at once.
    ///
    /// Two daemons starting at the same instant on the same stale path can
    /// both remove it; one of them then fails in bind. Run one instance per
    /// path (systemd does).
    ///
    /// Abstract names ("@name") are refused (EINVAL): they have no file, so
    /// no mode or group can protect them.
    public static func listen(
        path: String, mode: mode_t = 0o660, group: gid_t? = nil, backlog: Int32 = 64
    ) throws(SystemError) -> UnixListener {
        guard !path.hasPrefix("@") else {
            throw SystemError(call: "bind", errno: EINVAL, subject: path,
                              detail: "abstract socket names have no permissions; use a path")
        }
        try removeStaleSocket(at: path)

        let socket = try FileDescriptor.unixSocket(.stream, nonBlocking: true, subject: path)
        do {
            try socket.bind(unixAddress: path)
        } catch where error.errno == EADDRINUSE {
            // Someone bound it between our check and our bind.
            throw SystemError(call: "bind", errno: EADDRINUSE, subject: path,
                              detail: "another process bound this path while we were starting")
        }
        guard let identity = try FileIdentity.of(path: path), identity.isSocket else {
            throw SystemError(call: "lstat", errno: ENOENT, subject: path, detail: "the socket vanished right after bind")
        }
        do throws(SystemError) {
            // bind created the file with 0777 & ~umask. Until listen(2) below,
            // connecting is refused, so nobody gets in before these apply.
            try FileSystem.setPermissions(path, mode)
            if let group {
                try FileSystem.setGroup(path, group)
            }
            try socket.listen(backlog: backlog)
            return UnixListener(path: path, descriptor: socket, identity: identity)
        } catch {
            // Ours, just bound: remove it so a failed start leaves nothing behind.
            try? removeSocketFile(at: path, ifStill: identity)
            throw error
        }
    }

    /// Clears `path` for bind if it holds a socket nobody listens on; throws
    /// if it holds a live socket or something that is not a socket.
    private static func removeStaleSocket(at path: String) throws(SystemError) {
        guard let existing = try FileIdentity.of(path: path) else { return }
        guard existing.isSocket else {
            throw SystemError(call: "bind", errno: EEXIST, subject: path,
                              detail: "it exists and is not a socket; refusing to replace it")
        }
        // Non-blocking, so a live daemon with a full backlog answers EAGAIN
        // at once instead of making us wait for it.
        let probe = try FileDescriptor.unixSocket(.stream, nonBlocking: true, subject: path)
        let connected: Int32
        do {
            try probe.connect(unixAddress: path)
            connected = 0
        } catch {
            connected = error.errno
        }
        // The probe has done its work; how its close goes changes nothing.
        try? probe.close()
        switch connected {
        case 0, EAGAIN, EINPROGRESS:
            throw SystemError(call: "bind", errno: EADDRINUSE, subject: path, detail: "another daemon is listening on \(path)")
        case ECONNREFUSED:
            // A socket file with no listener: a crashed daemon's leftover.
            try FileSystem.remove(path)
        case ENOENT:
            return  // Removed by its owner meanwhile.
        default:
            throw SystemError(call: "connect", errno: connected, subject: path,
                              detail: "probing whether the existing socket is in use")
        }
    }

    /// Accepts one pending connection, or returns nil if there is none
    /// (EAGAIN) or it was aborted before we got to it (ECONNABORTED).
    ///
    /// The connection is non-blocking unless `nonBlocking` is false, and
    /// close-on-exec; its peer credentials are read here. Running out of
    /// descriptors (EMFILE, ENFILE) throws; the pending connection then
    /// stays queued and the listener stays readable, so a poll loop should
    /// back off rather than retry at once.
    public func accept(nonBlocking: Bool = true) throws(SystemError) -> UnixConnection? {
        guard let accepted = try descriptor.accept(nonBlocking: nonBlocking) else { return nil }
        let peer = try UnixConnection.named(path) { () throws(SystemError) in try PeerCredentials(socket: accepted) }
        return UnixConnection(descriptor: accepted, peer: peer, name: "\(path) pid \(peer.pid)")
    }

    /// Takes over a listening socket a previous process of this service left
    /// in systemd's file descriptor store. It must be a Unix stream socket,
    /// listening, bound to `path`, and `path` must still be a socket file:
    /// then clients that connected while no process ran are in its backlog,
    /// and accept() takes them in order. Made non-blocking here.
    public static func adopt(_ descriptor: FileDescriptor, path: String) throws(SystemError) -> UnixListener {
        let bound = try descriptor.listeningPath()
        guard bound.listening, bound.path == path else {
            throw SystemError(call: "getsockname", errno: EINVAL, subject: path,
                              detail: bound.listening ? "the stored socket listens at \(bound.path.isEmpty ? "no path" : bound.path), not here"
                                                      : "the stored socket is not listening")
        }
        guard let identity = try FileIdentity.of(path: path), identity.isSocket else {
            throw SystemError(call: "lstat", errno: ENOENT, subject: path,
                              detail: "the stored socket's file is gone; clients could not reach it")
        }
        try descriptor.setNonBlocking(true)
        return UnixListener(path: path, descriptor: descriptor, identity: identity)
    }

    /// The listening descriptor, for systemd's file descriptor store.
    public var storableDescriptor: FileDescriptor { descriptor }

    /// Closes this process's descriptor but leaves the socket file: the
    /// socket lives on in the fd store, and the next process adopts it.
    /// Clients connecting meanwhile wait in its backlog.
    public func closeKeepingSocket() {
        guard descriptor.isOpen else { return }
        try? descriptor.close()
    }

    /// Removes the socket file if it is still the one we bound, then closes
    /// the socket; later calls do nothing but return EBADF.
    ///
    /// Not a throwing call: the socket is closed whatever happens, and a
    /// shutting-down daemon can only log a failure to remove the file (the
    /// next start replaces it as stale). The first failure is returned.
    @discardableResult
    public func close() -> SystemError? {
        guard descriptor.isOpen else {
            return SystemError(call: "close", errno: EBADF, subject: path, detail: "listener already closed")
        }
        var failure: SystemError?
        do {
            try removeOwnSocketFile()
        } catch {
            failure = error
        }
        do {
            try descriptor.close()
        } catch {
            failure = failure ?? SystemError(call: error.call, errno: error.errno, subject: path, detail: error.detail)
        }
        return failure
    }

    /// Unlinks `path` only if it still names the socket we bound: after a
    /// newer daemon replaced it, the file is that daemon's.
    private func removeOwnSocketFile() throws(SystemError) {
        try Self.removeSocketFile(at: path, ifStill: identity)
    }

    private static func removeSocketFile(at path: String, ifStill identity: FileIdentity) throws(SystemError) {
        guard let current = try FileIdentity.of(path: path), current == identity else { return }
        try FileSystem.remove(path)
    }

    deinit {
        // A listener dropped without close() cleans up the same way.
        if descriptor.isOpen { try? removeOwnSocketFile() }
    }
}
