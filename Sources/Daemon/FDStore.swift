import Glibc
import Logging
import Posix
import UnixIO
import VTd

/// systemd's file descriptor store for this unit (FDSTORE=1,
/// FileDescriptorStoreMax=), as the daemon uses it: what must outlive the
/// process is handed to systemd as it is created, and the next process of the
/// unit gets it back through LISTEN_FDS.
///
/// What is stored, by FDNAME (names may not contain ':'):
/// - `event-listener`, `control-listener`: the listening sockets, so that a
///   VMM or operator connecting during a restart waits in the backlog;
/// - `device.SSSS.container`, `.group`, `.device`: the kernel objects of the
///   device serving source-id SSSS (hex), so that its mappings, the VMM's
///   device descriptor, BAR mappings and interrupts survive;
/// - `device.SSSS.journal`: the memfd `MappingJournal` that says exactly what
///   the container holds.
///
/// Facts of systemd 252 this relies on (observed, docs/ARCHITECTURE.md):
/// stored descriptors survive SIGKILL and crashes with Restart=, a
/// `systemctl restart`, and an exit with a status in RestartForceExitStatus=;
/// they are dropped on `systemctl stop`, on a clean exit that does not
/// restart, and when the start limit is hit. LISTEN_FDNAMES comes in no
/// stable order, so everything is matched by name.
final class FDStore {
    /// Whether there is a store at all (running under systemd). Without one,
    /// storing does nothing and a restart starts from scratch, as before.
    let isAvailable: Bool
    let logger: Logger
    /// What the previous process stored and this one has not claimed yet.
    private var inherited: [String: [FileDescriptor]] = [:]
    /// Names this process stored or adopted, for `releaseAll`.
    private(set) var names: Set<String> = []

    init(inherited passed: [(name: String, descriptor: FileDescriptor)], logger: Logger,
         environment: [String: String] = SystemdNotify.processEnvironment()) {
        isAvailable = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
        self.logger = logger
        for p in passed { inherited[p.name, default: []].append(p.descriptor) }
    }

    var isEmpty: Bool { inherited.isEmpty }

    /// Takes the stored descriptor named `name`; it stays in systemd's store
    /// too, so it is not stored again.
    func take(_ name: String) -> FileDescriptor? {
        guard var list = inherited[name], !list.isEmpty else { return nil }
        let first = list.removeFirst()
        inherited[name] = list.isEmpty ? nil : list
        names.insert(name)
        return first
    }

    /// Takes every stored descriptor named `name` (a name may carry several).
    func takeAll(_ name: String) -> [FileDescriptor] {
        var all: [FileDescriptor] = []
        while let fd = take(name) { all.append(fd) }
        return all
    }

    /// The source-ids that have stored device objects.
    var storedDevices: [SourceID] {
        Set(inherited.keys.compactMap(Self.sourceID(inDeviceName:))).sorted()
    }

    /// Takes every stored object of device `sid`, by role.
    func takeDevice(_ sid: SourceID) -> [String: FileDescriptor] {
        var objects: [String: FileDescriptor] = [:]
        for role in ["container", "group", "device", "journal"] {
            if let fd = take(Self.deviceName(sid, role)) { objects[role] = fd }
        }
        return objects
    }

    /// Hands `descriptor` to systemd under `name`. A failure is logged: the
    /// daemon works on, but a restart would not keep this object.
    func store(_ name: String, _ descriptor: FileDescriptor) {
        guard isAvailable else { return }
        do {
            _ = try SystemdNotify.notify("FDSTORE=1\nFDPOLL=0\nFDNAME=\(name)", descriptors: [descriptor])
            names.insert(name)
        } catch {
            logger.error("storing a descriptor with systemd failed; it will not survive a restart",
                         metadata: ["name": "\(name)", "error": "\(error)"])
        }
    }

    /// Stores the kernel objects and the journal of device `sid`.
    func storeDevice(_ sid: SourceID, _ objects: [(role: String, descriptor: FileDescriptor)]) {
        for (role, fd) in objects { store(Self.deviceName(sid, role), fd) }
    }

    /// Asks systemd to close and forget everything stored under `name`.
    func remove(_ name: String) {
        names.remove(name)
        guard isAvailable else { return }
        if !SystemdNotify.send("FDSTOREREMOVE=1\nFDNAME=\(name)") {
            logger.warning("removing a descriptor from systemd's store failed", metadata: ["name": "\(name)"])
        }
    }

    func removeDevice(_ sid: SourceID) {
        for role in ["container", "group", "device", "journal"] { remove(Self.deviceName(sid, role)) }
    }

    /// Removes every name this process knows of from the store.
    func releaseAll() {
        for name in names.sorted() { remove(name) }
    }

    /// What the previous process stored and nobody claimed, closed here and
    /// removed from systemd's store; returned for the log.
    func dropUnclaimed() -> [String] {
        let left = inherited.keys.sorted()
        for name in left {
            for fd in inherited[name] ?? [] { try? fd.close() }
            names.insert(name)
            remove(name)
        }
        inherited.removeAll()
        return left
    }

    static func deviceName(_ sid: SourceID, _ role: String) -> String {
        "device.\(String(sid.rawValue, radix: 16).leftPadded(to: 4)).\(role)"
    }

    static func sourceID(inDeviceName name: String) -> SourceID? {
        let parts = name.split(separator: ".")
        guard parts.count == 3, parts[0] == "device", let raw = UInt16(parts[1], radix: 16) else { return nil }
        return SourceID(rawValue: raw)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
