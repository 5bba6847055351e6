import Glibc
import UnixIO

/// Who may talk to the daemon: the peer's uid, or its primary or
/// supplementary gid, must be on the configured lists.
///
/// SO_PEERCRED gives the peer's uid, gid and pid, and SO_PEERGROUPS its
/// supplementary groups, both as the kernel recorded them at connect(2), so
/// that an operator in the socket's group is let in without that group being
/// primary. (Reading /proc/PID/status instead would be racy: by the time it
/// is read, the PID may belong to another process.)
struct PeerPolicy: Sendable {
    var uids: Set<uid_t>
    var gids: Set<gid_t>

    /// Whether `connection`'s peer may use the daemon. Supplementary groups
    /// are only read when uid and primary gid are not enough; if they cannot
    /// be read (a kernel without SO_PEERGROUPS), the peer is refused.
    func allows(_ connection: UnixConnection) -> Bool {
        allows(connection.peer) { (try? connection.peerGroups()) ?? [] }
    }

    /// The decision itself, with the supplementary groups asked for only
    /// when needed.
    func allows(_ peer: PeerCredentials, supplementaryGroups: () -> [gid_t]) -> Bool {
        if uids.contains(peer.uid) || gids.contains(peer.gid) { return true }
        guard !gids.isEmpty else { return false }
        return supplementaryGroups().contains { gids.contains($0) }
    }
}
