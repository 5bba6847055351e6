/// Checks on the daemon behind a vfio-user device, at the points of a
/// qtest run where its state must follow the guest: after each change the
/// guest made to its tables (and the invalidation QEMU turned into
/// DMA_MAP/DMA_UNMAP), after QEMU died, and after a new QEMU connected.
///
/// The vfio-user mode fills this in (mappings over the control socket,
/// `vtdbridgectl mappings` / `status`). The edu mode has no daemon: it uses
/// `NoDaemonChecks`, whose every answer is a visible skip.
protocol QEMUDaemonChecks {
    /// What these checks look at, printed once at the start.
    var name: String { get }
    /// After the guest's invalidation completed (QEMU has had the server's
    /// reply by then: it waits for each one before the store returns).
    func guestChanged(_ view: QEMUGuestView, after what: String) throws -> QEMUCheckOutcome
    /// After QEMU was killed: the device must hold no mapping, and the
    /// server must be ready for a new client.
    func qemuGone(_ view: QEMUGuestView) throws -> QEMUCheckOutcome
    /// After a new QEMU connected and the guest brought its IOMMU up again.
    func qemuBack(_ view: QEMUGuestView) throws -> QEMUCheckOutcome
}

/// No daemon to check: every check is reported as skipped, with why.
struct NoDaemonChecks: QEMUDaemonChecks {
    var reason: String
    var name: String { "none (\(reason))" }
    func guestChanged(_ view: QEMUGuestView, after what: String) throws -> QEMUCheckOutcome { .skipped(reason) }
    func qemuGone(_ view: QEMUGuestView) throws -> QEMUCheckOutcome { .skipped(reason) }
    func qemuBack(_ view: QEMUGuestView) throws -> QEMUCheckOutcome { .skipped(reason) }
}
