import Bridge
import Logging
import Posix
import VFIO
import VTd

/// One host device the daemon owns for a guest source-id: what the host
/// backend acquired for it (`HostDevice`), and how it was asked for.
final class AttachedDevice {
    /// A reload that changes only the quota of a configured device updates it.
    var spec: DeviceSpec
    let host: any HostDevice
    let backendName: String
    /// Recorded in the state directory (a runtime `attach`), as opposed to
    /// coming from the config file.
    let persistent: Bool
    /// The host backend's calls, recorded in the mapping journal when the
    /// device lives in the kernel (type1): what the next process reads
    /// after a restart. nil for dry-run.
    let journaled: JournaledBackend?
    /// Whether this process took the device over from a previous one.
    let adopted: Bool

    init(spec: DeviceSpec, host: any HostDevice, backendName: String, persistent: Bool,
         journaled: JournaledBackend? = nil, adopted: Bool = false) {
        self.spec = spec
        self.host = host
        self.backendName = backendName
        self.persistent = persistent
        self.journaled = journaled
        self.adopted = adopted
    }

    /// Where the shadow sync sends its calls: through the journal if there
    /// is one.
    var backend: any DMABackend { journaled ?? host.dma }
    var groupNumber: Int? { host.groupNumber }

    /// A duplicate of the device fd for the VMM. The caller owns the result.
    func duplicateDeviceFD() throws(VFIOError) -> FileDescriptor {
        try host.duplicateDeviceDescriptor()
    }

    var hostDescription: String { spec.host.description }

    /// Releases the device (see `HostDevice.close`).
    func close(logger: Logger) { host.close(logger: logger) }
}
