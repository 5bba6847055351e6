import Bridge
import Logging
import VFIO
import VTd

extension SyncRun {
    /// Notifier mode: each space holds exactly the notified mappings that
    /// lie in guest RAM and in the host's usable IOVA ranges (when nothing
    /// was refused, no quota was reached and syncing is not suspended).
    func checkNotifiedModel(_ what: String) throws(Violation) {
        let state = session.current
        guard state.source == .notifier, failurePeriod == 0, !state.suspended, let memory = state.memory else { return }
        for (sid, backend) in backends {
            let space = bridge.spaces[sid]!
            guard (space.faults.counts[.quotaExceeded] ?? 0) == 0 else { continue }
            var expected: [CheckingBackend.Mapping] = []
            for (iova, m) in (state.notified.spaces[sid] ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard let host = memory.hostAddress(gpa: m.gpa, size: m.size), info.isUsable(iova: iova, size: m.size) else { continue }
                expected.append(.init(iova: iova, size: m.size, hostAddress: host, permission: m.permission))
            }
            if backend.mappings != expected {
                throw Violation("\(what): notifier mode: \(sid) holds \(backend.mappings.count) mappings (\(backend.mappings.prefix(6).map { "\(hex($0.iova))+\(hex($0.size))" }.joined(separator: " "))), the notified ones in RAM are \(expected.count) (\(expected.prefix(6).map { "\(hex($0.iova))+\(hex($0.size))" }.joined(separator: " ")))")
            }
        }
    }
}

/// The notifier-mode contract (PROTOCOL.md NOTIFY; GuestIOMMU.notify), as a
/// plain dictionary per device: a MAP replaces whatever it overlaps; an
/// UNMAP removes the mappings it covers and is refused (ending the batch)
/// when it would cut one in two. A size of 0 is the all-ones address mask,
/// the whole 2^64-byte space: an UNMAP of it removes everything, a MAP of it
/// is refused (no guest RAM is that large).
struct NotifierModel {
    struct Notified: Equatable {
        var size: UInt64
        var gpa: UInt64
        var permission: DMAPermission
    }
    var spaces: [SourceID: [UInt64: Notified]] = [:]

    mutating func clear() { spaces.removeAll() }

    /// Applies a batch; returns the index of the refused event, if any.
    mutating func apply(_ events: [NotifierEvent], attached: Set<SourceID>) -> Int? {
        for (index, e) in events.enumerated() where attached.contains(e.sourceID) {
            var space = spaces[e.sourceID] ?? [:]
            let whole = e.size == 0
            let (sum, wraps) = e.iova.addingReportingOverflow(e.size)
            if wraps && !whole { return index }
            func end(_ iova: UInt64, _ size: UInt64) -> UInt64 { let (x, o) = iova.addingReportingOverflow(size); return o ? .max : x }
            let overlapping = space.filter { (iova, m) in whole || (iova < sum && end(iova, m.size) > e.iova) }
            if e.permission.isEmpty {
                if !whole, overlapping.contains(where: { $0.key < e.iova || end($0.key, $0.value.size) > sum }) { return index }
                for key in overlapping.keys { space[key] = nil }
            } else {
                if whole { return index }
                for key in overlapping.keys { space[key] = nil }
                space[e.iova] = Notified(size: e.size, gpa: e.gpa, permission: e.permission)
            }
            spaces[e.sourceID] = space
        }
        return nil
    }
}
