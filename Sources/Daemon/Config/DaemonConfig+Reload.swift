/// Which settings a reload (SIGHUP) can change in a running daemon.
///
/// The log level, the quotas, the walk budget, control.max-clients,
/// event-busy-poll-us, the metrics textfile and the device list take effect at once. The rest is
/// fixed for the life of the process, because something was built from it
/// at start: the listening sockets and their files (name, event-socket,
/// control.socket, control.group), the peer policy checked on every
/// accept (access.uids, access.gids), the state store (state-directory),
/// and the host backend with its device paths (backend,
/// vfio.device-directory, vfio.sysfs). A reload reports those as needing a
/// restart and keeps them as they run.
extension DaemonConfig {
    /// The config keys only a restart applies.
    public static let restartOnlyKeys = [
        "name", "event-socket", "control.socket", "control.group", "access.uids", "access.gids",
        "state-directory", "backend", "vfio.device-directory", "vfio.sysfs",
    ]

    /// The restart-only keys whose values differ between `self` (running)
    /// and `loaded`, in `restartOnlyKeys` order.
    public func restartOnlyDifferences(_ loaded: DaemonConfig) -> [String] {
        var keys: [String] = []
        if name != loaded.name { keys.append("name") }
        if eventSocket != loaded.eventSocket { keys.append("event-socket") }
        if controlSocket != loaded.controlSocket { keys.append("control.socket") }
        if controlGroup != loaded.controlGroup { keys.append("control.group") }
        if allowedUIDs != loaded.allowedUIDs { keys.append("access.uids") }
        if allowedGIDs != loaded.allowedGIDs { keys.append("access.gids") }
        if stateDirectory != loaded.stateDirectory { keys.append("state-directory") }
        if backend != loaded.backend { keys.append("backend") }
        if vfioDeviceDirectory != loaded.vfioDeviceDirectory { keys.append("vfio.device-directory") }
        if sysfsRoot != loaded.sysfsRoot { keys.append("vfio.sysfs") }
        return keys
    }

    /// `loaded` with the restart-only keys as `self` (running) has them:
    /// the configuration a reload leaves in force.
    public func applyingReloadable(from loaded: DaemonConfig) -> DaemonConfig {
        var next = loaded
        next.name = name
        next.eventSocket = eventSocket
        next.controlSocket = controlSocket
        next.controlGroup = controlGroup
        next.allowedUIDs = allowedUIDs
        next.allowedGIDs = allowedGIDs
        next.stateDirectory = stateDirectory
        next.backend = backend
        next.vfioDeviceDirectory = vfioDeviceDirectory
        next.sysfsRoot = sysfsRoot
        return next
    }
}
