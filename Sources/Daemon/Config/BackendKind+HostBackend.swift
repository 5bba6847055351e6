import Bridge
import VFIO

extension BackendKind {
    /// The host backend the config key `backend` names, over `kernel`. A
    /// new kernel interface is a case here and a `HostBackend` of its own;
    /// the daemon only ever sees the protocol.
    func makeHostBackend(_ config: DaemonConfig, kernel: any VFIOKernel) -> any HostBackend {
        switch self {
        case .vfio:
            Type1HostBackend(paths: VFIOPaths(deviceDirectory: config.vfioDeviceDirectory, sysfs: config.sysfsRoot), kernel: kernel)
        case .dryRun:
            DryRunHostBackend()
        }
    }
}
