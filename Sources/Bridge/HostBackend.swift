import Logging
import Posix
import VFIO

/// Which host device to assign: how an operator names it.
public enum HostDeviceAddress: Sendable, Hashable, CustomStringConvertible {
    /// A PCI address in the kernel's sysfs spelling, "0000:01:00.0".
    case pci(String)
    /// A VFIO group number (/dev/vfio/N), for a group of one device.
    case group(Int)

    public var description: String {
        switch self {
        case let .pci(address): address
        case let .group(number): "group:\(number)"
        }
    }
}

/// How the daemon acquires an assigned device and the kernel address space
/// that holds its DMA mappings: one conforming type per kernel interface.
///
/// QEMU's `VFIOIOMMUClass` puts `attach_device`/`detach_device` beside
/// `dma_map`/`dma_unmap`, so that the legacy container and iommufd are two
/// implementations of one class; this is the same seam. Today:
/// `Type1HostBackend` (a VFIO group in a type1 container of its own) and
/// `DryRunHostBackend`. An iommufd backend (a cdev device bound to an IOAS)
/// is another conforming type and a case of the config key `backend`;
/// nothing above this protocol changes.
public protocol HostBackend {
    /// The name `status` shows for devices on this backend.
    var name: String { get }
    /// Opens `address` with an address space of its own (one per guest
    /// address space: PROTOCOL.md, one container per device), ready for
    /// maps. On failure nothing stays open.
    func acquire(_ address: HostDeviceAddress, logger: Logger) throws(VFIOError) -> any HostDevice
}

/// One device a `HostBackend` acquired: the DMA backend the shadow sync
/// drives, the device descriptor the VMM may be given, and a close that
/// releases everything in the order the kernel wants.
public protocol HostDevice: AnyObject {
    /// Where the device's DMA mappings go.
    var dma: any DMABackend { get }
    /// The VFIO group, when the backend has one (type1); nil otherwise.
    var groupNumber: Int? { get }
    /// The VFIO device itself, for a front-end that proxies it (the
    /// vfio-user server: regions, interrupts, reset); nil when the backend
    /// opens no device (dry-run).
    var vfioDevice: Device? { get }
    /// A new descriptor for the device, for the VMM: it drives regions and
    /// interrupts, while DMA mapping stays with the daemon. The caller owns it.
    func duplicateDeviceDescriptor() throws(VFIOError) -> FileDescriptor
    /// Releases the device and its address space. Mappings must already be
    /// gone (the bridge's detach unmaps, so a failure is seen). Called once.
    func close(logger: Logger)
    /// The kernel objects that must outlive this process for its mappings,
    /// the VMM's device descriptor and its interrupts to survive a restart,
    /// by role ("container", "group", "device"): what goes to systemd's
    /// file descriptor store. Empty when nothing lives in the kernel (dry-run).
    var storableDescriptors: [(role: String, descriptor: FileDescriptor)] { get }
}

/// The kernel objects of a device a previous process acquired, by role, as
/// `HostDevice.storableDescriptors` named them.
public typealias StoredDevice = [String: FileDescriptor]

/// A host backend whose devices can be taken over from a previous process.
public protocol AdoptingHostBackend: HostBackend {
    /// Takes over `address` from the descriptors a previous process stored,
    /// without opening anything or changing the kernel's state. Throws when
    /// they are incomplete or not what `address` names; the caller then
    /// closes them and acquires the device anew.
    func adopt(_ address: HostDeviceAddress, stored: StoredDevice, logger: Logger) throws(VFIOError) -> any HostDevice
}
