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
