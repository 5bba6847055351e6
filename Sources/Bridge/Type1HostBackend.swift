import Glibc
import Logging
import Posix
import VFIO

/// Devices through the VFIO type1 interface: the device's group, attached
/// to a container of its own whose IOMMU model is type1v2 (or type1), and
/// the device descriptor the group hands out.
public struct Type1HostBackend: HostBackend {
    public let paths: VFIOPaths
    public let kernel: any VFIOKernel

    public init(paths: VFIOPaths, kernel: any VFIOKernel = LinuxVFIOKernel()) {
        self.paths = paths
        self.kernel = kernel
    }

    public var name: String { "vfio" }

    /// Opens the group, checks viability, creates the container, sets the
    /// IOMMU model, opens the device. What was opened is closed again when
    /// a later step fails.
    public func acquire(_ address: HostDeviceAddress, logger: Logger) throws(VFIOError) -> any HostDevice {
        let group: Group
        switch address {
        case let .pci(pci):
            group = try Group.open(pciAddress: pci, paths: paths, kernel: kernel, logger: logger)
        case let .group(number):
            group = try Group.open(number: number, paths: paths, kernel: kernel, logger: logger)
        }
        do throws(VFIOError) {
            try group.requireViable()
            let container = try Container.open(paths: paths, kernel: kernel, logger: logger)
            do throws(VFIOError) {
                try container.attach(group)
                let name: String
                switch address {
                case let .pci(pci):
                    name = pci
                case .group:
                    let members = try group.members()
                    guard members.count == 1, let only = members.first else {
                        throw VFIOError(operation: "attach", subject: "group \(group.number)", errno: EINVAL,
                                        detail: "the group holds \(members.count) devices (\(members.map(\.name).joined(separator: ", ")))",
                                        hint: "attach by PCI address to choose one")
                    }
                    name = only.name
                }
                let device = try group.openDevice(name)
                return Type1HostDevice(group: group, container: container, device: device)
            } catch {
                try? container.close()
                throw error
            }
        } catch {
            try? group.close()
            throw error
        }
    }
}

extension Type1HostBackend: AdoptingHostBackend {
    /// The container, the group in it and the device, as a previous process
    /// left them: the kernel is asked only whether the group is viable and in
    /// a container, and what the container's model supports. The group must
    /// be the one `address` names; the device is the group's only member or
    /// the PCI address given.
    public func adopt(_ address: HostDeviceAddress, stored: StoredDevice, logger: Logger) throws(VFIOError) -> any HostDevice {
        guard let containerFD = stored["container"], let groupFD = stored["group"], let deviceFD = stored["device"] else {
            throw VFIOError(operation: "adopt", subject: "\(address)", errno: 0,
                            detail: "the store holds \(stored.keys.sorted().joined(separator: ", ")), not a container, a group and a device")
        }
        let number: Int
        let name: String
        switch address {
        case let .pci(pci):
            guard let parsed = PCIAddress(pci) else {
                throw VFIOError(operation: "adopt", subject: pci, errno: EINVAL, detail: "not a PCI address")
            }
            number = try Group.groupNumber(of: parsed, paths: paths, kernel: kernel)
            name = pci
        case let .group(n):
            number = n
            name = ""
        }
        let container = try Container.adopt(containerFD, paths: paths, kernel: kernel, logger: logger)
        let group = try Group.adopt(groupFD, number: number, container: container, paths: paths, kernel: kernel, logger: logger)
        var deviceName = name
        if deviceName.isEmpty {
            let members = try group.members()
            guard members.count == 1, let only = members.first else {
                throw VFIOError(operation: "adopt", subject: "group \(number)", errno: EINVAL,
                                detail: "the group holds \(members.count) devices")
            }
            deviceName = only.name
        }
        let device = Device(adopting: deviceFD, name: deviceName, kernel: kernel, logger: logger)
        return Type1HostDevice(group: group, container: container, device: device)
    }
}

/// A device acquired through type1.
final class Type1HostDevice: HostDevice {
    let group: Group
    let container: Container
    let device: Device
    let dma: any DMABackend

    init(group: Group, container: Container, device: Device) {
        self.group = group
        self.container = container
        self.device = device
        dma = Type1Backend(container: container)
    }

    var groupNumber: Int? { group.number }
    var vfioDevice: Device? { device }

    var storableDescriptors: [(role: String, descriptor: FileDescriptor)] {
        [("container", container.storableDescriptor), ("group", group.storableDescriptor), ("device", device.storableDescriptor)]
    }

    func duplicateDeviceDescriptor() throws(VFIOError) -> FileDescriptor {
        try device.duplicateDescriptor()
    }

    /// The device first (a group with an open device cannot leave its
    /// container), then the group leaves the container, then the
    /// container goes, as drivers/vfio/group.c expects.
    func close(logger: Logger) {
        do { try device.close() } catch { logger.warning("closing device", metadata: ["error": "\(error)"]) }
        do { try group.unsetContainer() } catch { logger.debug("unsetting container", metadata: ["error": "\(error)"]) }
        do { try group.close() } catch { logger.warning("closing group", metadata: ["error": "\(error)"]) }
        do { try container.close() } catch { logger.warning("closing container", metadata: ["error": "\(error)"]) }
    }
}
