import Bridge
import VTd

/// The guest state in force, by the daemon's session rules (PROTOCOL.md
/// §1.5), kept by the sync harness apart from the bridge: the checks compare
/// what the kernel holds with what these rules say, not with what the
/// bridge believes, so a bridge that forgets to go back to a completed
/// session's state fails them.
///
/// - HELLO starts loading: the VMM's capabilities and mapping source take
///   over and nothing is synced. The state in force until then, the last
///   completed session's, is put aside; a second HELLO before READY keeps
///   the first one's, which is still the last completed state.
/// - READY ends loading: what the VMM sent is in force, and everything syncs.
/// - A VMM that goes away before READY leaves nothing of its session: the
///   state put aside is in force again, exactly as it was, live or itself
///   still waiting for a READY (a restarted daemon's).
struct SessionModel {
    struct GuestState {
        var caps: IOMMUCapabilities
        var source: TranslationSource
        var memory: GuestRAM?
        var rootTable: UInt64?
        var translationEnabled = false
        /// Nothing is synced: a VMM is loading, or a restarted daemon waits for one.
        var suspended = false
        /// What a notifier-mode VMM has notified, per device.
        var notified = NotifierModel()
    }

    /// The state the bridge must act on now.
    var current: GuestState
    /// The last completed session's state, from HELLO until READY or until
    /// the VMM goes away.
    private(set) var checkpoint: GuestState?

    init(_ state: GuestState) { current = state }

    var loading: Bool { checkpoint != nil }

    mutating func hello(_ caps: IOMMUCapabilities, source: TranslationSource) {
        if checkpoint == nil { checkpoint = current }
        current.caps = caps
        // A new source forgets what the old one said.
        if source != current.source {
            current.source = source
            current.notified.clear()
        }
        current.suspended = true
    }

    mutating func ready() {
        checkpoint = nil
        current.suspended = false
    }

    /// The VMM went away; false when no session was loading (nothing changes).
    mutating func abandon() -> Bool {
        guard let saved = checkpoint else { return false }
        current = saved
        checkpoint = nil
        return true
    }

    /// A detached device's notified mappings are gone, from the state put
    /// aside too: re-attached while a session loads, the device starts with
    /// none, as after any attach, whether or not that session completes.
    mutating func detach(_ sid: SourceID) {
        current.notified.spaces[sid] = nil
        checkpoint?.notified.spaces[sid] = nil
    }
}

extension SyncRun {
    /// The guest state the bridge reports is the one in force.
    func checkStateInForce(_ what: String) throws(Violation) {
        let state = session.current
        var differences: [String] = []
        if bridge.caps != state.caps {
            differences.append("capabilities \(hex(bridge.caps.cap))/\(hex(bridge.caps.ecap)), in force \(hex(state.caps.cap))/\(hex(state.caps.ecap))")
        }
        if bridge.source != state.source { differences.append("source \(bridge.source.rawValue), in force \(state.source.rawValue)") }
        if bridge.memory !== state.memory {
            differences.append("memory table \(world.describe(bridge.memory)), in force \(world.describe(state.memory))")
        }
        if bridge.rootTable != state.rootTable {
            differences.append("root table \(bridge.rootTable.map { hex($0) } ?? "none"), in force \(state.rootTable.map { hex($0) } ?? "none")")
        }
        if bridge.translationEnabled != state.translationEnabled {
            differences.append("translation \(bridge.translationEnabled), in force \(state.translationEnabled)")
        }
        if bridge.syncSuspended != state.suspended {
            differences.append("sync suspended \(bridge.syncSuspended), in force \(state.suspended)")
        }
        try check(differences.isEmpty,
                  "\(what): the bridge's guest state is not the one in force (\(session.loading ? "a session is loading" : "no session is loading")): \(differences.joined(separator: "; "))")
    }
}
