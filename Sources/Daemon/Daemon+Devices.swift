import Bridge
import Logging
import VFIO
import VTd
import Wire

extension Daemon {
    /// Opens the host device (or a dry-run stand-in), creates its address
    /// space and syncs it from the guest tables. Errors are in the control
    /// protocol's terms: the `attach` command returns them as they are.
    @discardableResult
    func attachDevice(_ spec: DeviceSpec, persistent: Bool) throws(ControlError) -> (AttachedDevice, SyncReport) {
        if let existing = devices[spec.guest] {
            throw .alreadyAttached(guest: spec.guest.description, to: existing.hostDescription)
        }
        if case let .pci(address) = spec.host, let other = devices.values.first(where: { $0.spec.host == spec.host }) {
            throw .alreadyAttached(host: address.description, as: other.spec.guest.description)
        }
        let device: AttachedDevice
        let host: any HostDevice
        do {
            host = try hostBackend.acquire(spec.host, logger: logger)
        } catch {
            throw .vfioError(error.description)
        }
        do {
            device = AttachedDevice(spec: spec, host: host, backendName: hostBackend.name, persistent: persistent,
                                    journaled: try makeJournaledBackend(spec, host: host))
        } catch {
            host.close(logger: logger)
            throw .vfioError("creating the mapping journal of \(spec.guest): \(error)")
        }
        if spec.vfioUserSocket != nil, device.host.vfioDevice == nil {
            device.close(logger: logger)
            throw ControlError(code: .vfioError, message: "the \(device.backendName) backend opens no device, so \(spec.guest) cannot be served over vfio-user")
        }
        let report: SyncReport
        do {
            report = try bridge.attach(spec.guest, backend: device.backend, mappingQuota: spec.quota ?? config.mappingQuota,
                                       clientFed: spec.vfioUserSocket != nil)
        } catch {
            device.close(logger: logger)
            throw ControlError(code: error.code == .alreadyAttached ? .alreadyAttached : .vfioError, message: error.message)
        }
        if let socket = spec.vfioUserSocket {
            do {
                try startVFIOUserServer(spec.guest, path: socket)
            } catch {
                _ = try? bridge.detach(spec.guest)
                device.close(logger: logger)
                throw error
            }
        }
        devices[spec.guest] = device
        storeDevice(device)
        failedDevices.removeValue(forKey: spec.guest)
        pendingDevices.removeValue(forKey: spec.guest)
        metrics.record(report)
        metrics.attachedDevices.record(devices.count)
        if let space = bridge.spaces[spec.guest] { metrics.recordDevice(space) }
        logger.info("attached", metadata: ["device": "\(spec.guest)", "host": "\(device.hostDescription)",
                                           "backend": "\(device.backendName)", "mappings": "\(report.maps)"])
        if persistent { persistAttachments() }
        return (device, report)
    }

    /// Unmaps everything of the device and closes it.
    func detachDevice(_ guest: SourceID) throws(ControlError) -> SyncReport {
        if devices[guest] == nil, let pending = pendingDevices.removeValue(forKey: guest) {
            // Not attached yet: stop retrying and forget the record.
            failedDevices.removeValue(forKey: guest)
            if pending.persistent { persistAttachments() }
            return SyncReport()
        }
        guard let device = devices[guest] else { throw .notAttached(guest: guest.description) }
        stopVFIOUserServer(guest)
        let unmapped = bridge.spaces[guest]?.shadow.count ?? 0
        var report: SyncReport
        do { report = try bridge.detach(guest) } catch { throw ControlError(code: .notAttached, message: error.message) }
        report.maps = 0
        devices.removeValue(forKey: guest)
        fdStore.removeDevice(guest)
        device.close(logger: logger)
        metrics.record(report)
        metrics.attachedDevices.record(devices.count)
        metrics.forgetDevice(guest)
        logger.info("detached", metadata: ["device": "\(guest)", "unmapped": "\(unmapped)"])
        if device.persistent { persistAttachments() }
        return report
    }

    func persistAttachments() {
        // Recorded attachments still being retried stay recorded.
        var specs = devices.values.filter(\.persistent).map(\.spec)
        specs += pendingDevices.values.filter { $0.persistent && devices[$0.spec.guest] == nil }.map(\.spec)
        let records = specs.sorted { $0.guest < $1.guest }.map {
            StateStore.Record(host: $0.hostText, guest: $0.guest.description, quota: $0.quota, vfioUser: $0.vfioUserSocket)
        }
        do {
            try store.save(records)
        } catch {
            logger.error("recording attachments failed; they will not survive a restart", metadata: ["error": "\(error)"])
        }
    }
}

extension DeviceSpec {
    /// The host as the state file and the control socket write it.
    var hostText: String {
        switch host {
        case let .pci(a): a
        case let .group(n): "group:\(n)"
        }
    }
}
