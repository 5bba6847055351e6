/// Who sees a DMA fault, depending on where the device's DMA is translated.
///
/// - QEMU's emulated edu DMAs through QEMU's emulated VT-d, which records
///   the fault in its fault recording registers (`EmulatedDMARFaults`).
/// - A real edu behind vfio-user DMAs through the host IOMMU (in the test
///   VM: the VM's own VT-d, driven by the VM's kernel) with the mappings the
///   daemon made; a DMA to an IOVA it does not map faults there, and the VM
///   kernel's intel-iommu driver logs it (`KernelLogDMARFaults`). QEMU's
///   emulated unit sees nothing of it.
protocol QEMUFaultWitness {
    /// Where faults are looked for, for the transcript.
    var name: String { get }
    /// Forgets faults seen so far; called just before a DMA that must fault.
    func arm(_ guest: QEMUGuest) throws
    /// Checks that a fault at `iova` (a write, or a read) was seen since `arm`.
    func expectFault(_ guest: QEMUGuest, iova: UInt64, write: Bool) throws -> QEMUCheckOutcome
}
