import Glibc
import Posix

/// The datagram socket entries are sent to journald on.
///
/// One unbound, unconnected AF_UNIX datagram socket, made once; each entry
/// is one sendto(2) to `path`. Not connected, so that a journald that
/// restarts (a new socket at the same path) is reached again by the next
/// entry. Non-blocking: journald that cannot keep up makes the send fail
/// with EAGAIN instead of stopping the caller, which for the daemon is the
/// thread that acknowledges the guest's invalidations; the handler then
/// writes that entry to standard error instead.
public final class JournalSocket: Sendable {
    /// Where journald listens for native-protocol datagrams
    /// (systemd-journald.service(8)).
    public static let defaultPath = "/run/systemd/journal/socket"

    public let path: String
    private let socket: FileDescriptor

    public init(path: String = JournalSocket.defaultPath) throws(SystemError) {
        self.path = path
        socket = try FileDescriptor.unixSocket(.datagram, nonBlocking: true, subject: path)
    }

    /// Sends one entry. Throws what sendto(2) reported: ENOENT or
    /// ECONNREFUSED when no journald listens at `path`, EAGAIN when its
    /// queue is full, EMSGSIZE for an entry larger than a datagram may be.
    public func send(_ entry: JournalEntry) throws(SystemError) {
        let bytes = entry.encoded
        _ = try bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) -> Int in try socket.sendDatagram(raw, toUnixAddress: path) }
        }.get()
    }
}
