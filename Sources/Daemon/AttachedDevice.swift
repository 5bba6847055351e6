import Bridge
import Glibc
import Logging
import Posix
import VFIO
import VTd

/// One host device the daemon owns for a guest source-id: its VFIO group,
/// its own container (one container per guest address space), its device
/// file, and the backend the shadow sync drives.
///
/// Closing order mirrors what the kernel wants: the device fd first, then
/// the group leaves the container, then the container goes.
final class AttachedDevice {
    let spec: DeviceSpec
    let backend: any DMABackend
    let backendName: String
    let groupNumber: Int?
    /// Recorded in the state directory (a runtime `attach`), as opposed to
    /// coming from the config file.
    let persistent: Bool
    private let group: Group?
    private let container: Container?
    private let device: Device?

    private init(spec: DeviceSpec, backend: any DMABackend, backendName: String, groupNumber: Int?, persistent: Bool,
                 group: Group?, container: Container?, device: Device?) {
        self.spec = spec
        self.backend = backend
        self.backendName = backendName
        self.groupNumber = groupNumber
        self.persistent = persistent
        self.group = group
        self.container = container
        self.device = device
    }

    /// Opens the group, checks viability, creates the container, sets the
    /// type1 IOMMU, opens the device.
    static func openVFIO(_ spec: DeviceSpec, paths: VFIOPaths, persistent: Bool, logger: Logger) throws(VFIOError) -> AttachedDevice {
        let group: Group
        switch spec.host {
        case let .pci(address):
            group = try Group.open(pciAddress: address, paths: paths, logger: logger)
        case let .group(number):
            group = try Group.open(number: number, paths: paths, logger: logger)
        }
        do throws(VFIOError) {
            try group.requireViable()
            let container = try Container.open(paths: paths, logger: logger)
            do throws(VFIOError) {
                try container.attach(group)
                let name: String
                switch spec.host {
                case let .pci(address):
                    name = address
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
                return AttachedDevice(spec: spec, backend: Type1Backend(container: container), backendName: "vfio",
                                      groupNumber: group.number, persistent: persistent,
                                      group: group, container: container, device: device)
            } catch {
                try? container.close()
                throw error
            }
        } catch {
            try? group.close()
            throw error
        }
    }

    /// A device on the dry-run backend: nothing is opened.
    static func dryRun(_ spec: DeviceSpec, persistent: Bool, logger: Logger) -> AttachedDevice {
        let groupNumber: Int? = if case let .group(n) = spec.host { n } else { nil }
        return AttachedDevice(spec: spec, backend: DryRunBackend(logger: logger), backendName: "dry-run",
                              groupNumber: groupNumber, persistent: persistent, group: nil, container: nil, device: nil)
    }

    /// A duplicate of the VFIO device fd for the VMM (it drives regions and
    /// interrupts; DMA mapping stays ours). The caller owns the result.
    func duplicateDeviceFD() throws(VFIOError) -> FileDescriptor {
        guard let device else {
            throw VFIOError(operation: "attach", subject: spec.guest.description, errno: ENODEV,
                            hint: "the dry-run backend opens no device, so there is no file descriptor to return")
        }
        return try device.duplicateDescriptor()
    }

    var hostDescription: String {
        switch spec.host {
        case let .pci(a): a
        case let .group(n): "group:\(n)"
        }
    }

    /// Closes device, group and container. Mappings must already be gone
    /// (the bridge's detach unmaps); closing the container would drop them
    /// anyway, but the daemon unmaps explicitly so that a failure is seen.
    func close(logger: Logger) {
        do { try device?.close() } catch { logger.warning("closing device", metadata: ["error": "\(error)"]) }
        if let group {
            do { try group.unsetContainer() } catch { logger.debug("unsetting container", metadata: ["error": "\(error)"]) }
            do { try group.close() } catch { logger.warning("closing group", metadata: ["error": "\(error)"]) }
        }
        do { try container?.close() } catch { logger.warning("closing container", metadata: ["error": "\(error)"]) }
    }
}
