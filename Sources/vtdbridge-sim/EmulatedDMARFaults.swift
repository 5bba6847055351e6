import VTd

/// Faults as QEMU's emulated DMAR unit records them (primary fault logging,
/// VT-d spec 7.2.1): a fault recording register with F set, the source-id,
/// the faulting page and whether it was a read; FSTS.PPF while one is
/// pending. QEMU also prints the first translation failure of a run on
/// stderr, but only the first, so the registers are what is checked.
///
/// QEMU collapses a fault from a source-id that already has one pending
/// (spec 7.2.1 allows it), so `arm` clears every record first.
struct EmulatedDMARFaults: QEMUFaultWitness {
    var name: String { "QEMU's emulated DMAR fault recording registers" }

    func arm(_ guest: QEMUGuest) throws {
        try guest.dmar.clearFaults(guest.caps)
    }

    func expectFault(_ guest: QEMUGuest, iova: UInt64, write: Bool) throws -> QEMUCheckOutcome {
        let records = try guest.dmar.faultRecords(guest.caps)
        let fsts = try guest.dmar.faultStatusBits()
        guard let record = records.first(where: { $0.sourceID == guest.device && $0.page == iova & ~0xfff && $0.isRead == !write }) else {
            throw SimError("QEMU's DMAR recorded no \(write ? "write" : "read") fault for \(guest.device) at \(hex(iova & ~0xfff)) (FSTS \(hex(fsts)); records: \(records.isEmpty ? "none" : records.map(\.description).joined(separator: "; ")))")
        }
        guard fsts & QEMUGuestDMAR.primaryPendingFault != 0 else {
            throw SimError("a fault is recorded (\(record)) but FSTS.PPF is clear (FSTS \(hex(fsts)))")
        }
        try guest.dmar.clearFaults(guest.caps)
        return .passed("QEMU's DMAR recorded it: \(record), FSTS.PPF set")
    }
}
