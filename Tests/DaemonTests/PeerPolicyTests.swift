@testable import Daemon
import Glibc
import UnixIO
import XCTest

/// Supplementary groups come from SO_PEERGROUPS: the kernel's record at
/// connect(2), not whatever /proc/PID/status says later.
final class PeerPolicyTests: XCTestCase {
    func testUidAndPrimaryGidNeedNoGroupLookup() {
        let peer = PeerCredentials(pid: 1, uid: 1000, gid: 1000)
        var asked = false
        XCTAssertTrue(PeerPolicy(uids: [1000], gids: []).allows(peer) { asked = true; return [] })
        XCTAssertTrue(PeerPolicy(uids: [], gids: [1000]).allows(peer) { asked = true; return [] })
        XCTAssertFalse(asked)
        XCTAssertFalse(PeerPolicy(uids: [], gids: []).allows(peer) { asked = true; return [1000] })
        XCTAssertFalse(asked, "no gid list: nothing to look up")
        XCTAssertTrue(PeerPolicy(uids: [], gids: [42]).allows(peer) { [7, 42] })
        XCTAssertFalse(PeerPolicy(uids: [], gids: [42]).allows(peer) { [7] })
    }

    /// The groups a peer had when it connected decide, even after it changed
    /// them (or, with /proc, after its PID went to another process).
    func testGroupsAreThoseOfTheConnectNotOfLater() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to change this process's groups") }
        var original = [gid_t](repeating: 0, count: Int(getgroups(0, nil)))
        XCTAssertEqual(Int(getgroups(Int32(original.count), &original)), original.count)
        let marker: gid_t = 4243
        XCTAssertFalse(original.contains(marker))

        let (client, server) = try UnixConnection.pair()
        defer { withExtendedLifetime(client) {} }
        XCTAssertEqual(setgroups(1, [marker]), 0)
        defer { XCTAssertEqual(setgroups(original.count, original), 0) }

        XCTAssertEqual(Set(try server.peerGroups()), Set(original), "recorded at connect")
        let policy = PeerPolicy(uids: [], gids: [marker])
        XCTAssertFalse(policy.allows(server), "the peer did not have \(marker) when it connected")
        // A connection made now has it.
        let (laterClient, laterServer) = try UnixConnection.pair()
        defer { withExtendedLifetime(laterClient) {} }
        XCTAssertTrue(policy.allows(laterServer))
    }
}
