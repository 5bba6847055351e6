import Logging
import VTd

/// Faults of one address space: a counter per reason, the most recent few,
/// and logging that cannot flood.
///
/// A hostile guest can produce a fault per leaf, a million per sync. Counting
/// is free; the log gets the first few of each reason and, after that, one
/// line per power of two, so the journal sees "leaf-outside-ram x1024" rather
/// than a thousand lines.
public struct FaultLog: Sendable {
    /// How many of the latest faults are kept (status shows them).
    public let recentCapacity: Int

    public private(set) var counts: [FaultReason: UInt64] = [:]
    public private(set) var recent: [TranslationFault] = []

    public init(recentCapacity: Int = 32) {
        self.recentCapacity = recentCapacity
    }

    public var total: UInt64 { counts.values.reduce(0, +) }

    /// Records a fault standing for `count` faults of its reason (one
    /// refusal that covers many mappings); logs it when the count of its
    /// reason reaches 1, 2, 3 or a power of two.
    public mutating func record(_ fault: TranslationFault, count: Int = 1, sourceID: SourceID, logger: Logger) {
        precondition(count >= 1)
        let before = counts[fault.reason] ?? 0
        let n = before + UInt64(count)
        counts[fault.reason] = n
        if recentCapacity > 0 {
            if recent.count >= recentCapacity { recent.removeFirst(recent.count - recentCapacity + 1) }
            recent.append(fault)
        }
        // The largest power of two ≤ n; passed since `before` means a power of two was reached.
        let power = UInt64(1) << UInt64(63 - n.leadingZeroBitCount)
        if before < 3 || power > before {
            // Keys the journal makes fields of (DEVICE=, FAULT_REASON=,
            // IOVA=), so that `journalctl FAULT_REASON=not-present` finds them.
            var metadata: Logger.Metadata = [
                "device": "\(sourceID)", "fault-reason": "\(fault.reason)", "count": "\(n)",
                "fault": "\(fault)",
            ]
            if let iova = fault.iova { metadata["iova"] = "0x\(String(iova, radix: 16))" }
            logger.warning("translation fault", metadata: metadata)
        }
    }
}
