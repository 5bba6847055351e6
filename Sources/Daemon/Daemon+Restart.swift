import Bridge
import Glibc
import JSON
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import Wire

/// Restarts the VM does not notice: what this process hands to systemd's file
/// descriptor store, and how the next process takes it back.
///
/// The path after a SIGKILL, a watchdog kill, `systemctl restart` or an
/// upgrade (docs/ARCHITECTURE.md, "Restarts"):
/// 1. the listeners are adopted, so a client connecting meanwhile waited in
///    the backlog and is accepted now;
/// 2. each configured or recorded device whose container, group and device
///    are in the store is adopted: nothing is opened, nothing unmapped; the
///    VMM's device descriptor, its BAR mappings and interrupts stay valid;
/// 3. its journal is read and the one call a dead process may have left
///    without an outcome is settled by unmapping its range
///    (`JournaledBackend.recover`), so the shadow is exactly the kernel's;
/// 4. syncing is suspended until a VMM's READY: the reconnecting VMM sends
///    its memory table (the adopted mappings find their host addresses in
///    the same files), its registers, then READY, whose full sync over
///    unchanged tables makes no call. Invalidations the guest queued while
///    no process ran were never acknowledged, so the VMM still holds them
///    and the guest still waits; READY's full sync covers them, and only
///    then does the VMM complete the guest's wait descriptors.
extension Daemon {
    /// What the last start took over from a previous process, for `status`
    /// and the log.
    struct Adoption {
        var devices = 0
        var mappings = 0
        /// Kernel calls made to settle calls a dead process left unfinished.
        var settledCalls = 0
        /// Devices whose record was missing or not trusted: emptied instead.
        var distrusted = 0
        /// The full sync at the first READY after the restart: calls made.
        var resyncMaps: Int?
        var resyncUnmaps: Int?
        /// CLOCK_REALTIME of READY=1, in ns: a restart's kill-to-READY time
        /// is this minus the time of the kill, on the same clock.
        var readyAtNanoseconds: Int64 = 0
    }

    static func realtimeNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// Guest RAM as the bridge has it now, for the journal: the adapter
    /// follows each new memory table.
    final class BridgeMemoryFiles: HostMemoryFiles {
        unowned let bridge: GuestIOMMU
        init(bridge: GuestIOMMU) { self.bridge = bridge }
        func fileLocation(ofHostAddress hostAddress: UInt64, size: UInt64) -> FileLocation? {
            bridge.memory?.fileLocation(ofHostAddress: hostAddress, size: size)
        }
        func hostAddress(of location: FileLocation, size: UInt64) -> UInt64? {
            bridge.memory?.hostAddress(of: location, size: size)
        }
    }

    /// The journal a device's calls go through, when its objects live in the
    /// kernel; nil for a backend with nothing to keep (dry-run).
    func makeJournaledBackend(_ spec: DeviceSpec, host: any HostDevice) throws(SystemError) -> JournaledBackend? {
        guard !host.storableDescriptors.isEmpty else { return nil }
        let journal = try MappingJournal.create(owner: .init(sourceID: spec.guest, host: spec.hostText),
                                                snapshotCapacity: journalCapacity(spec))
        return journaledBackend(spec, inner: host.dma, journal: journal)
    }

    private func journaledBackend(_ spec: DeviceSpec, inner: any DMABackend, journal: MappingJournal) -> JournaledBackend {
        let backend = JournaledBackend(inner: inner, journal: journal)
        // A vfio-user client's files are not guest RAM the bridge knows: its
        // mappings are recorded with an unknown file, which is right, since
        // they do not outlive the client's connection anyway.
        if spec.vfioUserSocket == nil { backend.files = memoryFiles }
        return backend
    }

    /// Room for every mapping the quota allows (the shadow never holds more);
    /// the file is sparse, so room costs nothing until used.
    func journalCapacity(_ spec: DeviceSpec) -> Int {
        max(config.quota(for: spec) ?? (1 << 20), 1024)
    }

    /// Hands the device's kernel objects and journal to systemd.
    func storeDevice(_ device: AttachedDevice) {
        guard fdStore.isAvailable, !device.adopted else { return }
        var objects = device.host.storableDescriptors
        if let journal = device.journaled?.journal { objects.append(("journal", journal.file)) }
        fdStore.storeDevice(device.spec.guest, objects)
    }

    /// A listener: the stored one if the previous process left one for this
    /// path, else a new one, which is stored.
    func listener(named name: String, path: String) throws -> UnixListener {
        if let stored = fdStore.take(name) {
            do {
                let adopted = try UnixListener.adopt(stored, path: path)
                logger.info("adopted listening socket from the fd store", metadata: ["socket": "\(path)"])
                return adopted
            } catch {
                logger.warning("stored listening socket not adopted; binding a new one",
                               metadata: ["socket": "\(path)", "error": "\(error)"])
                try? stored.close()
                fdStore.remove(name)
            }
        }
        let fresh = try UnixListener.listen(path: path, mode: 0o660, group: config.controlGroup)
        fdStore.store(name, fresh.storableDescriptor)
        return fresh
    }

    /// Attaches `spec`, taking the device over from the fd store when the
    /// previous process stored it.
    func attachOrAdopt(_ spec: DeviceSpec, persistent: Bool) throws(ControlError) {
        if fdStore.storedDevices.contains(spec.guest) {
            try adoptDevice(spec, persistent: persistent)
        } else {
            try attachDevice(spec, persistent: persistent)
        }
    }

    private func adoptDevice(_ spec: DeviceSpec, persistent: Bool) throws(ControlError) {
        let sid = spec.guest
        var objects = fdStore.takeDevice(sid)
        let journalFD = objects.removeValue(forKey: "journal")
        func giveUp(_ why: String) throws(ControlError) {
            logger.error("stored device not adopted; opening it anew", metadata: ["device": "\(sid)", "error": "\(why)"])
            for fd in objects.values { try? fd.close() }
            try? journalFD?.close()
            fdStore.removeDevice(sid)
            try attachDevice(spec, persistent: persistent)
        }
        guard let adopting = hostBackend as? AdoptingHostBackend else {
            return try giveUp("the \(hostBackend.name) backend cannot adopt devices")
        }
        let host: any HostDevice
        do {
            host = try adopting.adopt(spec.host, stored: objects, logger: logger)
        } catch {
            return try giveUp("\(error)")
        }
        // The record: trusted only if it is complete and about this device.
        var journal: MappingJournal?
        var distrust: String?
        if let journalFD {
            do {
                let found = try MappingJournal.adopt(journalFD)
                let expected = MappingJournal.Owner(sourceID: sid, host: spec.hostText)
                if found.owner == expected { journal = found } else { distrust = "the journal is about \(found.owner), not \(expected)" }
            } catch {
                distrust = "\(error)"
            }
        } else {
            distrust = "no journal was stored"
        }
        let backend: JournaledBackend
        var entries: [MappingJournal.Entry] = []
        var settled = 0
        var handedOver: (connection: UnixConnection, memory: VFIOUserMemory, record: JSONValue)?
        do {
            if let journal {
                backend = journaledBackend(spec, inner: host.dma, journal: journal)
                let recovery = try backend.recover()
                if let why = recovery.distrusted { distrust = why }
                if let unsettled = recovery.settled {
                    logger.notice("settled a call the previous process left unfinished",
                                  metadata: ["device": "\(sid)", "call": "\(unsettled)", "how": "unmapped its range"])
                }
                settled = recovery.calls
                entries = recovery.entries
            } else {
                // Never guess: what the container holds is unknown, so it is
                // emptied, and READY's sync maps what the guest has.
                let fresh = try MappingJournal.create(owner: .init(sourceID: sid, host: spec.hostText),
                                                      snapshotCapacity: journalCapacity(spec))
                backend = journaledBackend(spec, inner: host.dma, journal: fresh)
                try backend.unmapAll()
                settled = 1
                fdStore.remove(FDStore.deviceName(sid, "journal"))
                fdStore.store(FDStore.deviceName(sid, "journal"), fresh.file)
            }
            if spec.vfioUserSocket != nil {
                handedOver = takeHandedOverVFIOUser(sid)
                if handedOver == nil, !entries.isEmpty {
                    // No session to resume (a crash, not a hand-over): the
                    // client's connection ended with the process, and QEMU
                    // does not reconnect, so its regions go, as on any
                    // disconnect.
                    try backend.unmapAll()
                    settled += 1
                    logger.notice("unmapped the regions of the vfio-user client that was connected before the restart",
                                  metadata: ["device": "\(sid)", "mappings": "\(entries.count)"])
                    entries = []
                }
            }
        } catch {
            host.close(logger: logger)
            fdStore.removeDevice(sid)
            throw ControlError.vfioError("adopting \(sid): \(error)")
        }
        if let distrust {
            adoption.distrusted += 1
            logger.error("the stored mapping record was not trusted; the container was emptied and is rebuilt from the guest's tables at the VMM's READY",
                         metadata: ["device": "\(sid)", "why": "\(distrust)"])
        }
        let device = AttachedDevice(spec: spec, host: host, backendName: hostBackend.name, persistent: persistent,
                                    journaled: backend, adopted: true)
        do {
            try bridge.attach(sid, backend: backend, mappingQuota: config.quota(for: spec),
                              clientFed: spec.vfioUserSocket != nil, adopting: entries, clientFiles: handedOver?.memory)
        } catch {
            host.close(logger: logger)
            fdStore.removeDevice(sid)
            throw ControlError.vfioError(error.message)
        }
        if let socket = spec.vfioUserSocket {
            do {
                try startVFIOUserServer(sid, path: socket)
            } catch {
                _ = try? bridge.detach(sid)
                host.close(logger: logger)
                fdStore.removeDevice(sid)
                throw error
            }
        }
        devices[sid] = device
        if let handedOver, let server = vfioUserServers[sid] { resumeVFIOUser(server, handedOver) }
        failedDevices.removeValue(forKey: sid)
        pendingDevices.removeValue(forKey: sid)
        adoption.devices += 1
        adoption.mappings += entries.count
        adoption.settledCalls += settled
        metrics.attachedDevices.record(devices.count)
        if let space = bridge.spaces[sid] { metrics.recordDevice(space) }
        logger.info("adopted device from the fd store", metadata: [
            "device": "\(sid)", "host": "\(device.hostDescription)", "mappings": "\(entries.count)",
            "settled-calls": "\(settled)",
        ])
    }

    /// Stored devices that are no longer configured or recorded: the kernel
    /// still maps their guest pages, so they are emptied (one UNMAP of
    /// everything) before their objects are released.
    func releaseUnclaimedDevices() {
        for sid in fdStore.storedDevices {
            var objects = fdStore.takeDevice(sid)
            if let containerFD = objects.removeValue(forKey: "container") {
                do {
                    let container = try Container.adopt(containerFD, logger: logger)
                    let bytes = try container.unmapAll()
                    logger.notice("released a stored device that is no longer configured",
                                  metadata: ["device": "\(sid)", "unmapped-bytes": "\(bytes)"])
                    try? container.close()
                } catch {
                    logger.error("emptying a stored device that is no longer configured failed; its mappings go when every descriptor of it is closed",
                                 metadata: ["device": "\(sid)", "error": "\(error)"])
                }
            }
            for fd in objects.values { try? fd.close() }
            fdStore.removeDevice(sid)
        }
        let dropped = fdStore.dropUnclaimed()
        if !dropped.isEmpty {
            logger.notice("dropped stored descriptors nobody claimed", metadata: ["names": "\(dropped.joined(separator: ", "))"])
        }
    }

    /// The first READY after a restart: its sync is the resync.
    func recordResync(_ report: SyncReport) {
        guard adoption.devices > 0, adoption.resyncMaps == nil else { return }
        adoption.resyncMaps = report.maps
        adoption.resyncUnmaps = report.unmaps
        logger.notice("resynced after a restart", metadata: [
            "adopted-mappings": "\(adoption.mappings)", "maps": "\(report.maps)", "unmaps": "\(report.unmaps)",
        ])
    }

    var adoptionJSON: JSONValue {
        .object([
            "devices": .int(Int64(adoption.devices)), "mappings": .int(Int64(adoption.mappings)),
            "settled-calls": .int(Int64(adoption.settledCalls)), "distrusted": .int(Int64(adoption.distrusted)),
            "resync-maps": adoption.resyncMaps.map { .int(Int64($0)) } ?? .null,
            "resync-unmaps": adoption.resyncUnmaps.map { .int(Int64($0)) } ?? .null,
            "fd-store": .bool(fdStore.isAvailable),
            "ready-at-ns": .int(adoption.readyAtNanoseconds),
        ])
    }

    /// RestartKillSignal (SIGUSR1): the next process takes over. Replies
    /// already queued go out; connections close (the VMM reconnects into
    /// the stored listener's backlog); the devices, containers, journals and
    /// listeners stay open in systemd's store; nothing is unmapped.
    func handOver() {
        notify("STOPPING=1\nSTATUS=handing over to the next process; every mapping stays")
        flushClients()
        // A vfio-user client between two messages is handed over with its
        // connection (Daemon+VFIOUserHandOver.swift); one that is not (a
        // message half read) ends here as on a stop, its regions unmapped.
        for sid in vfioUserServers.keys.sorted() {
            guard let server = vfioUserServers[sid] else { continue }
            if let session = server.session {
                _ = try? session.outbound.flush(to: session.connection)
                if handOverVFIOUser(server) {
                    unregister(session)
                    _ = session.connection.close()
                } else {
                    dropVFIOUser(session, why: "the restart found it in the middle of a message")
                }
            }
            polled.removeValue(forKey: server.listener.fd)
            server.listener.closeKeepingSocket()
        }
        vfioUserServers.removeAll()
        closeClients()
        for listener in [eventListener, controlListener].compactMap({ $0 }) {
            polled.removeValue(forKey: listener.fd)
            listener.closeKeepingSocket()
        }
        eventListener = nil
        controlListener = nil
        let mappings = mappingCount
        logger.notice("handed over to the next process; exiting for systemd to start it", metadata: [
            "devices": "\(devices.count)", "mappings-kept": "\(mappings)",
        ])
    }

    /// Exit status of a hand-over: the unit lists it in SuccessExitStatus=
    /// (not a failure) and RestartForceExitStatus= (restarted even when no
    /// restart job asked, e.g. `vtdbridgectl upgrade` or `kill -USR1`).
    public static let handOverExitStatus: Int32 = 75
}
