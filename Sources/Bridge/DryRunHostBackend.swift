import Glibc
import Logging
import Posix
import VFIO

/// The dry-run backend's devices: nothing is opened, maps go to a
/// `DryRunBackend`. A user feature for hosts without VFIO; no test of the
/// real path stands on it.
public struct DryRunHostBackend: HostBackend {
    public init() {}

    public var name: String { "dry-run" }

    public func acquire(_ address: HostDeviceAddress, logger: Logger) throws(VFIOError) -> any HostDevice {
        let group: Int? = if case let .group(n) = address { n } else { nil }
        return DryRunHostDevice(address: address, groupNumber: group, dma: DryRunBackend(logger: logger))
    }
}

final class DryRunHostDevice: HostDevice {
    let address: HostDeviceAddress
    let groupNumber: Int?
    let dma: any DMABackend
    /// No device is opened, so there is none to proxy.
    var vfioDevice: Device? { nil }

    /// Nothing lives in the kernel: a restart has nothing to keep.
    var storableDescriptors: [(role: String, descriptor: FileDescriptor)] { [] }

    init(address: HostDeviceAddress, groupNumber: Int?, dma: any DMABackend) {
        self.address = address
        self.groupNumber = groupNumber
        self.dma = dma
    }

    func duplicateDeviceDescriptor() throws(VFIOError) -> FileDescriptor {
        throw VFIOError(operation: "attach", subject: address.description, errno: ENODEV,
                        hint: "the dry-run backend opens no device, so there is no file descriptor to return")
    }

    func close(logger: Logger) {}
}
