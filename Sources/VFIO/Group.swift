import CVFIO
import Glibc
import Logging
import Posix
import Synchronization

/// A VFIO group (/dev/vfio/N): the unit of isolation the IOMMU can enforce,
/// attached to a container and asked for device descriptors.
///
/// Thread-safe: the descriptor stays open for the length of every call on it
/// (Posix's scoped access); the container link is behind a lock.
public final class Group: Sendable {
    /// The IOMMU group number, N in /dev/vfio/N.
    public let number: Int
    /// The node that was opened.
    public let path: String

    let fd: FileDescriptor
    private let kernel: any VFIOKernel
    private let paths: VFIOPaths
    private let logger: Logger
    private let container = Mutex<Container?>(nil)

    private init(number: Int, path: String, fd: FileDescriptor, kernel: any VFIOKernel, paths: VFIOPaths, logger: Logger) {
        self.number = number
        self.path = path
        self.fd = fd
        self.kernel = kernel
        self.paths = paths
        self.logger = logger
    }

    /// Opens /dev/vfio/`number`.
    ///
    /// - Throws: `VFIOError`; ENOENT (group not present: nothing bound to
    ///   vfio-pci), EACCES/EPERM (node permissions), EBUSY (open elsewhere)
    ///   carry a hint.
    public static func open(
        number: Int,
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel(),
        logger: Logger
    ) throws(VFIOError) -> Group {
        let path = paths.group(number)
        let fd = try FileDescriptor.open(path, kernel: kernel, subject: "group \(number)") {
            ErrorHints.openGroup($0, path: path, number: number)
        }
        logger.debug("opened VFIO group", metadata: ["group": "\(number)"])
        return Group(number: number, path: path, fd: fd, kernel: kernel, paths: paths, logger: logger)
    }

    /// The group descriptor itself, to hand to systemd's file descriptor
    /// store (sd_notify FDSTORE=1), which keeps a duplicate across a restart.
    /// Still owned here.
    public var storableDescriptor: FileDescriptor { fd }

    /// Takes over group `number`, open in `descriptor`, which another process
    /// attached to `container` (both handed on through systemd's file
    /// descriptor store). VFIO_GROUP_GET_STATUS must say it is viable and in
    /// a container; opening /dev/vfio/N again would fail with EBUSY while
    /// this descriptor is open, so adopting it is the only way back in.
    public static func adopt(
        _ descriptor: FileDescriptor,
        number: Int,
        container: Container,
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel(),
        logger: Logger
    ) throws(VFIOError) -> Group {
        let group = Group(number: number, path: paths.group(number), fd: descriptor, kernel: kernel, paths: paths, logger: logger)
        let status = try group.status()
        guard status.isViable, status.isContainerSet else {
            // Our copy closes with `group`; the stored one is the caller's.
            throw VFIOError(operation: "VFIO_GROUP_GET_STATUS", subject: "group \(number)", errno: 0,
                            detail: "the stored group is \(status.isViable ? "" : "not viable and ")\(status.isContainerSet ? "in a container" : "in no container")",
                            hint: "it cannot be adopted; the daemon opens the group anew")
        }
        group.container.withLock { $0 = container }
        container.groupAttached(number)
        logger.debug("adopted VFIO group", metadata: ["group": "\(number)"])
        return group
    }

    /// Opens the group of the PCI device at `pciAddress` ("DDDD:BB:DD.F" or
    /// "BB:DD.F"), found through its sysfs `iommu_group` link.
    public static func open(
        pciAddress: String,
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel(),
        logger: Logger
    ) throws(VFIOError) -> Group {
        guard let address = PCIAddress(pciAddress) else {
            throw VFIOError(operation: "resolve IOMMU group", subject: pciAddress, errno: EINVAL,
                            detail: "not a PCI address", hint: "write it as DDDD:BB:DD.F or BB:DD.F, in hex")
        }
        let number = try groupNumber(of: address, paths: paths, kernel: kernel)
        return try open(number: number, paths: paths, kernel: kernel, logger: logger)
    }

    /// The IOMMU group number of a PCI device: the basename of
    /// /sys/bus/pci/devices/ADDR/iommu_group, which links to
    /// /sys/kernel/iommu_groups/N.
    public static func groupNumber(
        of address: PCIAddress,
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel()
    ) throws(VFIOError) -> Int {
        let sysfs = Sysfs(kernel: kernel)
        let device = paths.pciDevice(address)
        // The device entry is itself a symlink into /sys/devices; reading it
        // first separates "no such device" from "device without a group".
        do {
            _ = try sysfs.readLink(device)
        } catch {
            var error = error
            if error.errno == ENOENT {
                error.hint = "no PCI device \(address) on this host (check lspci -D)"
            }
            throw error
        }
        let link = device + "/iommu_group"
        let name: String
        do {
            name = try sysfs.linkBasename(link)
        } catch {
            var error = error
            if error.errno == ENOENT {
                error.hint = "device \(address) has no IOMMU group: enable the IOMMU "
                    + "(intel_iommu=on on the kernel command line)"
            }
            throw error
        }
        guard let number = Int(name), number >= 0 else {
            throw VFIOError(operation: "readlink", subject: link, errno: 0,
                            detail: "link target '\(name)' is not a group number")
        }
        return number
    }

    /// VFIO_GROUP_GET_STATUS.
    public func status() throws(VFIOError) -> GroupStatus {
        var status = vfio_group_status()
        status.argsz = UInt32(cvfio_sizeof_vfio_group_status)
        let kernel = kernel
        try fd.vfio("VFIO_GROUP_GET_STATUS") { kernel.ioctl($0, cvfio_VFIO_GROUP_GET_STATUS, &status) }
        return GroupStatus(flags: status.flags)
    }

    /// The devices of this IOMMU group and the drivers they are bound to.
    public func members() throws(VFIOError) -> [GroupMember] {
        let sysfs = Sysfs(kernel: kernel)
        let directory = paths.groupDevices(number)
        return try sysfs.entries(directory).map { (name) throws(VFIOError) -> GroupMember in
            do throws(VFIOError) {
                return GroupMember(name: name, driver: try sysfs.linkBasename("\(directory)/\(name)/driver"))
            } catch where error.errno == ENOENT {
                return GroupMember(name: name, driver: nil)
            }
        }
    }

    /// Throws unless the group is viable. The error names every device of the
    /// group that is not bound to vfio-pci, since those are what the operator
    /// has to rebind.
    public func requireViable() throws(VFIOError) {
        guard !(try status().isViable) else { return }
        let culprits: String
        do {
            let others = try members().filter { !$0.isBoundToVFIO }
            culprits = others.isEmpty
                ? "every listed device is bound to vfio-pci"
                : "devices not bound to vfio-pci: " + others.map(\.description).joined(separator: ", ")
        } catch {
            culprits = "could not list the group's devices: \(error)"
        }
        throw VFIOError(
            operation: "VFIO_GROUP_GET_STATUS", subject: "group \(number)", errno: 0,
            detail: "group \(number) is not viable; \(culprits)",
            hint: "every device in IOMMU group \(number) must be bound to vfio-pci or unbound "
                + "from its driver (echo ADDR > /sys/bus/pci/devices/ADDR/driver/unbind)")
    }

    /// Attaches the group to `container` (VFIO_GROUP_SET_CONTAINER), after
    /// checking viability so that the error can name the devices in the way.
    public func setContainer(_ container: Container) throws(VFIOError) {
        try requireViable()
        let kernel = kernel
        let target = container.path
        // The container's number is the ioctl's argument: it stays open for
        // the call as well.
        try container.fd.withRawValue("VFIO_GROUP_SET_CONTAINER") { (containerFD) throws(VFIOError) in
            var argument = containerFD
            try fd.vfio("VFIO_GROUP_SET_CONTAINER", detail: target, hint: { code in
                switch code {
                case EINVAL: "the group is already attached to a container"
                case EBUSY: "another driver claimed DMA ownership of a device in the group (not viable)"
                case EPERM: "the container's IOMMU model does not allow this group"
                default: nil
                }
            }) {
                kernel.ioctl($0, cvfio_VFIO_GROUP_SET_CONTAINER, &argument)
            }
        }
        self.container.withLock { $0 = container }
        container.groupAttached(number)
        logger.debug("attached VFIO group", metadata: ["group": "\(number)", "container": "\(target)"])
    }

    /// Detaches the group from its container (VFIO_GROUP_UNSET_CONTAINER).
    public func unsetContainer() throws(VFIOError) {
        let kernel = kernel
        try fd.vfio("VFIO_GROUP_UNSET_CONTAINER") { kernel.ioctl($0, cvfio_VFIO_GROUP_UNSET_CONTAINER, value: 0) }
        let previous = container.withLock { value in
            let old = value
            value = nil
            return old
        }
        previous?.groupDetached(number)
    }

    /// A descriptor for the member device `name`, e.g. "0000:01:00.0"
    /// (VFIO_GROUP_GET_DEVICE_FD). The group must be in a container whose
    /// IOMMU model is set.
    public func openDevice(_ name: String) throws(VFIOError) -> Device {
        let kernel = kernel
        let groupNumber = number
        let deviceFD = try fd.vfio("VFIO_GROUP_GET_DEVICE_FD", detail: "device \(name)", hint: { code in
            switch code {
            case EINVAL: "attach the group to a container and set its IOMMU model first"
            case ENODEV: "no device named \(name) in group \(groupNumber) (names look like 0000:01:00.0)"
            case EBUSY: "the device is already open"
            default: nil
            }
        }) { raw in
            name.withCString { kernel.ioctl(raw, cvfio_VFIO_GROUP_GET_DEVICE_FD, UnsafeMutableRawPointer(mutating: $0)) }
        }
        let owned = FileDescriptor(adopting: Int32(deviceFD), kernel: kernel, subject: "device \(name)")
        return Device(name: name, fd: owned, kernel: kernel, logger: logger)
    }

    deinit {
        // The kernel detaches a group from its container when its last
        // descriptor closes (FileDescriptor's deinit does that); keep the
        // container's bookkeeping in step.
        let number = number
        container.withLock { $0 }?.groupDetached(number)
    }

    /// Closes the group descriptor.
    public func close() throws(VFIOError) {
        let previous = container.withLock { value in
            let old = value
            value = nil
            return old
        }
        // The kernel detaches the group from its container on last close.
        previous?.groupDetached(number)
        do { try fd.close() } catch { throw VFIOError(error) }
    }
}
