import Glibc
import Posix

/// Who is on the other end of a Unix socket, as the kernel recorded it
/// (SO_PEERCRED): for a client, at its connect(2); for a server, at its
/// listen(2). A peer cannot forge these, which is why access checks use them.
public struct PeerCredentials: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t

    public init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// Reads SO_PEERCRED from a connected Unix socket.
    public init(socket: FileDescriptor) throws(SystemError) {
        let (pid, uid, gid) = try socket.peerCredentials()
        self.init(pid: pid, uid: uid, gid: gid)
    }

    public var description: String {
        "pid \(pid) uid \(uid) gid \(gid)"
    }
}
