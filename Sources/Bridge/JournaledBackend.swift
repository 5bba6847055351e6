import VFIO
import VTd

/// A `DMABackend` that records every call in a `MappingJournal` before it
/// reaches the kernel and its outcome after, so that the journal always says
/// what the container holds, give or take the one call in flight.
///
/// It sits at the seam, under the shadow sync, so every path that changes a
/// container (table syncs, notifier events, vfio-user regions, detach,
/// unmap-all) is recorded without knowing it. The cost per call is a handful
/// of stores to a page already mapped; the ioctl is thousands of times more.
public final class JournaledBackend: DMABackend {
    public let inner: any DMABackend
    public let journal: MappingJournal
    /// Where host addresses' bytes live (guest RAM files, a vfio-user
    /// client's files); set by the owner, read at each map. nil, or an
    /// address it cannot place: the mapping is recorded with an unknown file,
    /// and a restarted process remaps it rather than trust it.
    public var files: (any HostMemoryFiles)?

    public init(inner: any DMABackend, journal: MappingJournal) {
        self.inner = inner
        self.journal = journal
    }

    public func limits() throws(VFIOError) -> IOMMUInfo { try inner.limits() }

    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        let location = files?.fileLocation(ofHostAddress: hostAddress, size: size) ?? .unknown
        let record = journal.begin(.map, iova: iova, size: size, permission: permission, location: location)
        do {
            try inner.map(iova: iova, size: size, hostAddress: hostAddress, permission: permission)
        } catch {
            journal.finish(record, succeeded: false)
            throw error
        }
        journal.finish(record, succeeded: true)
    }

    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        let record = journal.begin(.unmap, iova: iova, size: size)
        do {
            try inner.unmap(iova: iova, size: size)
        } catch {
            // A refused unmap left the mapping (the shadow keeps it too);
            // an unmap that removed a different size is an error the shadow
            // also keeps, and the next process settles by range below.
            journal.finish(record, succeeded: false)
            throw error
        }
        journal.finish(record, succeeded: true)
    }

    public func unmapAll() throws(VFIOError) {
        let record = journal.begin(.unmapAll, iova: 0, size: 0)
        do {
            try inner.unmapAll()
        } catch {
            journal.finish(record, succeeded: false)
            throw error
        }
        journal.finish(record, succeeded: true)
    }

    public func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        let record = journal.begin(.unmap, iova: iova, size: size)
        // Whatever the kernel answers, nothing is left in the range unless
        // the call failed outright.
        do {
            let bytes = try inner.unmapRange(iova: iova, size: size)
            journal.finish(record, succeeded: true)
            return bytes
        } catch {
            journal.finish(record, succeeded: false)
            throw error
        }
    }

    /// What a process that adopted this container learns from the journal.
    public struct Recovery: Sendable {
        /// The mappings the container holds, in IOVA order.
        public var entries: [MappingJournal.Entry]
        /// The call a dead process left without an outcome, now settled.
        public var settled: MappingJournal.Unsettled?
        /// Kernel calls made to settle it (0 or 1), or to empty a container
        /// whose record did not hold together.
        public var calls: Int
        /// Why the record was not trusted and the container was emptied
        /// instead (nil: it was trusted).
        public var distrusted: String?
    }

    /// Reads the journal a previous process left and settles its unknown
    /// call, never by guessing:
    /// - a MAP whose outcome is unknown is undone by unmapping its range;
    ///   it was not acknowledged, so the guest is still waiting on it, and
    ///   the next sync maps it again if the tables still ask for it;
    /// - an UNMAP whose outcome is unknown is issued again over its range;
    /// - an UNMAP of everything is issued again.
    /// An unmap of a range that may or may not be mapped is always safe; a
    /// mapping the record does not know about is not, and none is left.
    /// Then the journal is rewritten as one snapshot of what is held.
    public func recover() throws(VFIOError) -> Recovery {
        var (entries, unsettled) = journal.contents()
        var calls = 0
        if let unsettled {
            calls = 1
            switch unsettled.operation {
            case .map, .unmap:
                _ = try inner.unmapRange(iova: unsettled.iova, size: unsettled.size)
                let end = unsettled.iova &+ unsettled.size
                entries.removeAll { $0.iova < end && $0.end > unsettled.iova }
            case .unmapAll:
                try inner.unmapAll()
                entries.removeAll()
            }
        }
        // The kernel never holds overlapping or unaligned mappings, so a
        // record that says so is not the kernel's: empty the container
        // rather than trust any of it.
        var distrusted: String?
        for (i, e) in entries.enumerated() {
            if e.size == 0 || e.iova & 0xfff != 0 || e.iova.addingReportingOverflow(e.size).overflow
                || (i > 0 && entries[i - 1].end > e.iova) {
                distrusted = "entry \(i) (iova 0x\(String(e.iova, radix: 16)) size 0x\(String(e.size, radix: 16))) is empty, unaligned or overlaps the one before"
                break
            }
        }
        if distrusted != nil {
            try inner.unmapAll()
            calls += 1
            entries = []
        }
        journal.rewrite(entries)
        return Recovery(entries: entries, settled: unsettled, calls: calls, distrusted: distrusted)
    }
}
