import Glibc
import VTd

/// The guest's invalidation queue (VT-d spec 6.5.2): a ring of 128-bit
/// descriptors in guest RAM that the unit consumes from IQH up to the tail
/// the guest writes to IQT. Each batch ends in an invalidation wait
/// descriptor with a status write (spec 6.5.2.8), as Linux's qi_submit_sync
/// does: when the status value lands in guest RAM, everything before it is
/// done.
final class QEMUGuestInvalidationQueue {
    let qtest: QTestClient
    let dmar: QEMUGuestDMAR
    /// The queue's 4 KiB page and the page the wait descriptors write to.
    let queue: UInt64
    let statusAddress: UInt64
    let latencies: QTestLatencyLog
    /// IQA.QS = 0: one 4 KiB page of 256 128-bit descriptors.
    static let entries = 256
    private(set) var tail = 0
    private var sequence: UInt32 = 0

    init(qtest: QTestClient, dmar: QEMUGuestDMAR, queue: UInt64, statusAddress: UInt64, latencies: QTestLatencyLog) {
        precondition(queue & 0xfff == 0 && statusAddress & 3 == 0)
        self.qtest = qtest
        self.dmar = dmar
        self.queue = queue
        self.statusAddress = statusAddress
        self.latencies = latencies
    }

    /// Enables queued invalidation as Linux's dmar_enable_qi does: tail to
    /// 0, IQA = base | DW 0 (128-bit descriptors) | QS 0, then GCMD.QIE and
    /// wait for GSTS.QIES. Enabling resets IQH to 0 (spec 11.4, Invalidation
    /// Queue Head).
    func enable() throws {
        tail = 0
        try qtest.writeq(dmar.base + QEMUGuestDMAR.queueTail, 0)
        try qtest.writeq(dmar.base + QEMUGuestDMAR.queueAddress, queue)
        try dmar.command(QEMUGuestDMAR.queuedInvalidationEnable, on: true)
    }

    /// Queues `descriptors` and a wait descriptor, writes the new tail, and
    /// waits for the wait descriptor's status write. Returns the latency of
    /// the IQT store (recorded under `what`).
    @discardableResult
    func submit(_ descriptors: [InvalidationDescriptor], what: String) throws -> Duration {
        precondition(descriptors.count + 1 < Self.entries, "a batch must fit in the queue")
        sequence &+= 1
        let wait = InvalidationDescriptor.wait(statusWrite: true, interrupt: false, fence: true,
                                               statusData: sequence, statusAddress: statusAddress)
        for d in descriptors + [wait] {
            let slot = queue + UInt64(tail) * 16
            let (low, high) = d.encoded
            try qtest.writeq(slot, low)
            try qtest.writeq(slot + 8, high)
            tail = (tail + 1) % Self.entries
        }
        // IQT bits 18:4 hold the tail as a descriptor index.
        let latency = try qtest.writeq(dmar.base + QEMUGuestDMAR.queueTail, UInt64(tail) << 4)
        latencies.record(what, latency)
        let deadline = ContinuousClock.now + .seconds(10)
        while try qtest.readl(statusAddress) != sequence {
            let fsts = try dmar.faultStatusBits()
            if fsts & QEMUGuestDMAR.queueError != 0 {
                let head = try qtest.readq(dmar.base + QEMUGuestDMAR.queueHead)
                throw SimError("the DMAR unit refused a descriptor of \"\(what)\" (FSTS.IQE; IQH \(hex(head)), FSTS \(hex(fsts)))")
            }
            guard ContinuousClock.now < deadline else {
                throw SimError("the wait descriptor of \"\(what)\" wrote no status within 10 s (IQH \(hex(try qtest.readq(dmar.base + QEMUGuestDMAR.queueHead))), tail \(tail))")
            }
            usleep(1000)
        }
        return latency
    }
}
