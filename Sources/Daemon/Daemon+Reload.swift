import Bridge
import Glibc
import Logging
import UnixIO
import VTd

extension Daemon {
    /// The signals the daemon reads from its SignalDescriptor, which the
    /// executable must block before any other thread starts: SIGTERM and
    /// SIGINT stop, SIGUSR1 hands over (the unit's RestartKillSignal),
    /// SIGHUP reloads the configuration (the unit's ExecReload).
    public static let handledSignals: [Int32] = [SIGTERM, SIGINT, SIGUSR1, SIGHUP]

    /// SIGHUP: reads the configuration again, from the same file,
    /// environment and flags as the start, and applies what can change
    /// without a restart (DaemonConfig+Reload.swift).
    ///
    /// systemd 252 has no Type=notify-reload, so the unit's ExecReload only
    /// sends the signal; the daemon itself says RELOADING=1 before it
    /// starts and READY=1 when it is done, which keeps the unit
    /// "reloading" in between (sd_notify(3)). MONOTONIC_USEC= goes with
    /// RELOADING=1 as later systemd versions require it.
    func reload() {
        notify("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())\nSTATUS=reloading the configuration")
        let result: ConfigReload
        if let reloadConfig {
            do {
                result = applyReload(try reloadConfig())
            } catch {
                result = refuseReload("\(error)")
            }
        } else {
            result = refuseReload("this daemon was started without a configuration to reload (it runs in a test or as a library)")
        }
        let now = ContinuousClock.now
        let status = currentStatus
        statusReporter.record(status, at: now)
        notify("READY=1\nSTATUS=\(status); \(result.summary)")
    }

    private func refuseReload(_ error: String) -> ConfigReload {
        let result = ConfigReload(outcome: .refused, atNanoseconds: Self.realtimeNanoseconds(), error: error)
        lastReload = result
        logger.error("configuration \(result.summary)")
        return result
    }

    /// Makes the running daemon match `loaded` where it can without a
    /// restart, and says what it did. The device list is compared with the
    /// one the running configuration named: a device added to the file is
    /// attached, one removed from it is detached, one whose host or
    /// vfio-user socket changed is detached and attached again, and one
    /// whose quota alone changed keeps its mappings. Runtime attachments
    /// (the control socket's `attach`, recorded in the state directory) are
    /// not the file's: a reload leaves them alone, even when the file
    /// starts or stops naming the same guest source-id.
    func applyReload(_ loaded: DaemonConfig) -> ConfigReload {
        let running = config
        var result = ConfigReload(outcome: .applied, atNanoseconds: Self.realtimeNanoseconds())
        result.needsRestart = running.restartOnlyDifferences(loaded)
        let next = running.applyingReloadable(from: loaded)

        if next.logLevel != logLevel.level {
            result.changes.append("log.level: \(logLevel.level.rawValue) → \(next.logLevel.rawValue)")
            logLevel.setLevel(next.logLevel)
        }
        if next.mappingQuota != running.mappingQuota {
            result.changes.append("mapping-quota: \(running.mappingQuota.map { "\($0)" } ?? "none") → \(next.mappingQuota.map { "\($0)" } ?? "none")")
        }
        if next.walkBudget != running.walkBudget {
            result.changes.append("walk-budget: \(running.walkBudget) → \(next.walkBudget)")
            bridge.walkBudget = next.walkBudget
        }
        if next.maxClients != running.maxClients {
            // Read at each accept; clients already connected stay.
            result.changes.append("control.max-clients: \(running.maxClients) → \(next.maxClients)")
        }
        if next.busyPollMicroseconds != running.busyPollMicroseconds {
            result.changes.append("event-busy-poll-us: \(running.busyPollMicroseconds) → \(next.busyPollMicroseconds)")
            busyUntil = nil
        }
        if next.metricsTextfile != running.metricsTextfile || next.metricsIntervalSeconds != running.metricsIntervalSeconds {
            // A new writer, due at once: the file (or its new path) is
            // written in this poll round rather than an interval later. A
            // file the reload stops naming is left as it is, as after a stop.
            result.changes.append("metrics: \(Self.textfileSetting(running)) → \(Self.textfileSetting(next))")
            metricsTextfile = next.metricsTextfile.map { MetricsTextfile(path: $0, intervalSeconds: next.metricsIntervalSeconds) }
        }
        // From here on attachDevice sees the new mapping-quota.
        config = next

        let before = Dictionary(running.devices.map { ($0.guest, $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(next.devices.map { ($0.guest, $0) }, uniquingKeysWith: { a, _ in a })
        for spec in running.devices where after[spec.guest] == nil {
            removeConfiguredDevice(spec, into: &result)
        }
        for spec in next.devices {
            guard let old = before[spec.guest] else {
                addConfiguredDevice(spec, into: &result)
                continue
            }
            if old == spec { continue }
            if old.host == spec.host && old.vfioUserSocket == spec.vfioUserSocket {
                // The quota alone: the device keeps its mappings; its space
                // gets the new quota below.
                if let device = devices[spec.guest], !device.persistent { device.spec = spec }
                if let pending = pendingDevices[spec.guest], !pending.persistent { pendingDevices[spec.guest] = (spec, false) }
                continue
            }
            removeConfiguredDevice(old, into: &result)
            addConfiguredDevice(spec, into: &result)
        }
        applyQuotas(into: &result)

        // The whole report in one message, as `systemctl status` and
        // `journalctl` show it.
        logger.notice("configuration \(result.summary)")
        if !result.needsRestart.isEmpty {
            logger.warning("changed settings need a restart to take effect; they keep their running values until then",
                           metadata: ["keys": "\(result.needsRestart.joined(separator: ", "))"])
        }
        lastReload = result
        return result
    }

    /// A device the file no longer names: detached if it is the file's (not
    /// a runtime attachment), or no longer retried if it never attached.
    private func removeConfiguredDevice(_ spec: DeviceSpec, into result: inout ConfigReload) {
        if let device = devices[spec.guest] {
            guard !device.persistent else {
                result.changes.append("devices: \(spec.guest) left attached (a runtime attachment, not the file's)")
                return
            }
            do {
                let report = try detachDevice(spec.guest)
                result.changes.append("devices: detached \(spec.guest) (\(spec.host))")
                for failure in report.failures { result.failures.append("detaching \(spec.guest): \(failure)") }
            } catch {
                result.failures.append("detaching \(spec.guest): \(error.message)")
            }
        } else if let pending = pendingDevices[spec.guest], !pending.persistent {
            pendingDevices.removeValue(forKey: spec.guest)
            failedDevices.removeValue(forKey: spec.guest)
            result.changes.append("devices: \(spec.guest) (\(spec.host)) no longer retried")
        } else if failedDevices.removeValue(forKey: spec.guest) != nil {
            result.changes.append("devices: \(spec.guest) (\(spec.host)) no longer listed as failed")
        }
    }

    /// A device the file now names: attached, or retried every second like
    /// a configured device that fails at start.
    private func addConfiguredDevice(_ spec: DeviceSpec, into result: inout ConfigReload) {
        if let existing = devices[spec.guest] {
            if existing.persistent && existing.spec.host == spec.host {
                result.changes.append("devices: \(spec.guest) already attached at runtime; left as it is")
            } else {
                result.failures.append("attaching \(spec): \(spec.guest) is attached to \(existing.hostDescription); detach it first")
            }
            return
        }
        do {
            let (_, report) = try attachDevice(spec, persistent: false)
            result.changes.append("devices: attached \(spec.guest) (\(spec.host))")
            for failure in report.failures { result.failures.append("syncing \(spec.guest): \(failure)") }
        } catch {
            failedDevices[spec.guest] = error.message
            if error.code == .vfioError {
                pendingDevices[spec.guest] = (spec, false)
                result.failures.append("attaching \(spec.guest): \(error.message); retrying every second")
            } else {
                result.failures.append("attaching \(spec.guest): \(error.message)")
            }
            logger.error("configured device not attached", metadata: ["device": "\(spec.guest)", "error": "\(error.message)"])
        }
    }

    /// Every attached device's space gets the quota the configuration now
    /// gives it (its own, else mapping-quota). A raised quota is applied at
    /// once: the device is synced again, as `replay` does, so that mappings
    /// the old quota refused are made now rather than at the guest's next
    /// invalidation, which may never come. A lowered one keeps what is
    /// mapped and refuses new mappings until the device is below it.
    private func applyQuotas(into result: inout ConfigReload) {
        for sid in devices.keys.sorted() {
            guard let device = devices[sid], let space = bridge.spaces[sid] else { continue }
            let quota = config.quota(for: device.spec)
            guard space.mappingQuota != quota else { continue }
            let raised = quota == nil || (space.mappingQuota.map { quota! > $0 } ?? false)
            result.changes.append("devices: \(sid) mapping quota \(space.mappingQuota.map { "\($0)" } ?? "unlimited") → \(quota.map { "\($0)" } ?? "unlimited")")
            space.mappingQuota = quota
            guard raised, bridge.memory != nil, !bridge.syncSuspended else { continue }
            do {
                let report = try bridge.replay(sid)
                metrics.record(report)
                if report.maps > 0 { result.changes.append("devices: \(sid) synced again under the raised quota: \(report.maps) mapping(s) made") }
            } catch {
                result.failures.append("syncing \(sid) under its new quota: \(error.message)")
            }
        }
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    /// How a reload's report names the metrics textfile setting.
    private static func textfileSetting(_ config: DaemonConfig) -> String {
        config.metricsTextfile.map { "\($0) every \(config.metricsIntervalSeconds) s" } ?? "no textfile"
    }
}
