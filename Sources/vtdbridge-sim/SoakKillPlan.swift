import Foundation
import Glibc
import VTdGuest

/// Where one SIGKILL lands.
enum SoakKillPoint: CustomStringConvertible {
    /// After `batches` acked batches, between two batches: nothing in flight.
    case boundary(batches: Int)
    /// After `batches` acked batches, a batch of `ops` operations is sent and
    /// the daemon killed `fraction` × (the batch's expected time) later,
    /// without waiting for its ack.
    case inFlight(batches: Int, ops: Int, fraction: Double)
    /// A second thread kills the daemon `milliseconds` after the stream
    /// starts; the stream sends batches back to back until the channel breaks.
    case timer(milliseconds: Int)
    /// During the restart after the previous kill: READY is sent (the
    /// daemon's full sync of everything the guest mapped) and the daemon
    /// killed `fraction` × (that sync's expected time) later.
    case duringReady(fraction: Double)

    var description: String {
        switch self {
        case let .boundary(n): "between batches, after \(n) acked batch(es)"
        case let .inFlight(n, ops, f): "in flight: after \(n) acked batch(es), a batch of \(ops) op(s) sent, kill at \(String(format: "%.2f", f)) × its expected time"
        case let .timer(ms): "from a second thread, \(ms) ms into a back-to-back stream"
        case let .duringReady(f): "during the restart's READY full sync, at \(String(format: "%.2f", f)) × its expected time"
        }
    }
}

/// How the VMM comes back after a kill.
enum SoakReconnect: String {
    /// The VMM drops its device fds first (they pin the dead daemon's
    /// groups), the daemon restarts and restores its recorded attachments,
    /// the VMM asks for its device fds again, then HELLO … READY.
    case dropFirst = "drop-fds-first"
    /// The daemon restarts while the VMM still holds the dead daemon's
    /// device fds (its recorded attachments fail with EBUSY and are retried);
    /// the VMM reconnects (HELLO … READY with no device attached), then drops
    /// the fds and attaches: the attach's own sync maps everything.
    case holdFDs = "hold-fds"
}

struct SoakKillPlan {
    var point: SoakKillPoint
    var reconnect: SoakReconnect

    /// A plan for `kills` kills: each kind in a fixed proportion, shuffled;
    /// parameters drawn from the seed. The first kill is never during READY
    /// (there is no restart before it).
    static func make(kills: Int, rng: inout SplitMix64) -> [SoakKillPlan] {
        enum Kind { case boundary, inFlight, timer, duringReady }
        let cycle: [Kind] = [.inFlight, .boundary, .timer, .inFlight, .duringReady, .boundary, .timer, .inFlight, .boundary, .timer]
        var kinds = (0..<kills).map { cycle[$0 % cycle.count] }
        rng.shuffle(&kinds)
        if case .duringReady = kinds.first, let i = kinds.firstIndex(where: { $0 != .duringReady }) { kinds.swapAt(0, i) }
        return kinds.map { kind in
            let point: SoakKillPoint
            switch kind {
            case .boundary: point = .boundary(batches: rng.inRange(1...8))
            case .inFlight: point = .inFlight(batches: rng.inRange(0...6), ops: rng.inRange(8...64), fraction: rng.unit() * 0.25)
            case .timer: point = .timer(milliseconds: rng.inRange(5...400))
            case .duringReady: point = .duringReady(fraction: rng.unit())
            }
            return SoakKillPlan(point: point, reconnect: rng.below(2) == 0 ? .dropFirst : .holdFDs)
        }
    }
}
