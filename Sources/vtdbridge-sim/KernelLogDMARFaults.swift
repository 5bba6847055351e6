import Glibc
import VTd

/// Faults as the kernel of the machine this runs on logs them: inside the
/// test VM, a real edu's DMA to an IOVA the daemon's container does not map
/// faults in the VM's IOMMU, and its intel-iommu driver logs "DMAR: [DMA
/// Write …] Request device [BB:DD.F] fault addr …". The device named there
/// is the real edu's address in the VM, not the qtest guest's 00:03.0, so
/// the fault is matched by page and direction.
///
/// The driver rate-limits these lines (10 per 5 s): the scenarios make few
/// faults, and a missing line fails the check rather than passing it.
final class KernelLogDMARFaults: QEMUFaultWitness {
    private var log: KernelLog?
    var name: String { "the kernel's DMAR fault log (/dev/kmsg)" }

    func arm(_ guest: QEMUGuest) throws {
        log = KernelLog()
    }

    func expectFault(_ guest: QEMUGuest, iova: UInt64, write: Bool) throws -> QEMUCheckOutcome {
        guard let log else { preconditionFailure("expectFault before arm") }
        guard access("/dev/kmsg", R_OK) == 0 else { throw SimError("cannot read /dev/kmsg for the kernel's DMAR fault lines") }
        var seen: [KernelLog.Fault] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            seen += log.faults()
            if let f = seen.first(where: { $0.page == iova & ~0xfff && $0.write == write }) {
                return .passed("the kernel logged a DMAR \(write ? "write" : "read") fault at \(hex(f.page)) from device [\(f.device)]")
            }
            usleep(50_000)
        }
        throw SimError("the kernel logged no DMAR \(write ? "write" : "read") fault at \(hex(iova & ~0xfff)) within 5 s (other faults: \(seen.isEmpty ? "none" : seen.map { "\($0.device) \(hex($0.page))" }.joined(separator: ", ")))")
    }
}
