import Foundation
import UnixIO

/// Who may talk to the daemon: the peer's uid, or its primary or
/// supplementary gid, must be on the configured lists.
///
/// SO_PEERCRED gives the peer's uid, gid and pid at connect time; the
/// supplementary groups come from /proc/PID/status, so that an operator in
/// the socket's group is let in without that group being primary.
struct PeerPolicy: Sendable {
    var uids: Set<uid_t>
    var gids: Set<gid_t>

    func allows(_ peer: PeerCredentials) -> Bool {
        if uids.contains(peer.uid) || gids.contains(peer.gid) { return true }
        guard !gids.isEmpty else { return false }
        return Self.supplementaryGroups(pid: peer.pid).contains { gids.contains($0) }
    }

    static func supplementaryGroups(pid: pid_t) -> [gid_t] {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return [] }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { gid_t($0) }
        }
        return []
    }
}
