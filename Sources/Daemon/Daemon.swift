import Bridge
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import Wire

/// vtdbridged: one instance serves one VM — its guest IOMMU and its assigned
/// devices.
///
/// Everything runs on one thread around poll(2): the event channel, the
/// control socket, signals (signalfd) and the systemd watchdog. A request is
/// handled to the end — every map and unmap it causes has returned from the
/// kernel — before its reply is queued and before the next request is read;
/// that ordering is the ack guarantee of docs/PROTOCOL.md §1.5, and it is why
/// SIGTERM never interrupts a batch half-way.
public final class Daemon {
    /// The configuration in force: the start's, then each reload's for the
    /// keys a reload may change (Daemon+Reload.swift).
    public internal(set) var config: DaemonConfig
    /// Reads the configuration again for a reload (SIGHUP), from the same
    /// sources as the start; nil: reloads are refused.
    let reloadConfig: (() throws -> DaemonConfig)?
    /// What the last reload did, for `status`.
    var lastReload: ConfigReload?
    /// STATUS= as sent to systemd, at most once a second (StatusReporter).
    let statusReporter = StatusReporter<DaemonStatus>()
    let logger: Logger
    let logLevel: any LogLevelControl
    let metricsText: (@Sendable () -> String)?
    let version: String
    let metrics: DaemonMetrics
    /// The node_exporter textfile (config key metrics.textfile), if any.
    var metricsTextfile: MetricsTextfile?
    let policy: PeerPolicy
    let store: StateStore
    /// How devices are acquired (config key `backend`): type1 or dry-run.
    let hostBackend: any HostBackend
    let signals: SignalDescriptor

    let bridge: GuestIOMMU
    var devices: [SourceID: AttachedDevice] = [:]
    /// Configured or recorded devices that could not be attached yet, with
    /// why. They are retried every second: a device may be bound to
    /// vfio-pci later, or its group may still be held by a VMM that kept
    /// the device fd of a daemon that crashed.
    var failedDevices: [SourceID: String] = [:]
    var pendingDevices: [SourceID: (spec: DeviceSpec, persistent: Bool)] = [:]
    var nextRetry = ContinuousClock.now

    var eventListener: UnixListener?
    var controlListener: UnixListener?
    /// What the poll loop watches, by descriptor (PollClient.swift).
    var polled: [Int32: any PollClient] = [:]
    /// After VMM traffic, poll without sleeping until then (config
    /// event-busy-poll-us; nil: sleep in poll as usual).
    var busyUntil: ContinuousClock.Instant?
    var busyPoll: Duration { .microseconds(config.busyPollMicroseconds) }
    /// The earlier of two optional deadlines (nil: none).
    static func earlier(_ a: ContinuousClock.Instant?, _ b: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    /// `roundNow`'s reading, cleared when poll returns.
    var roundClock: ContinuousClock.Instant?
    var vmm: EventSession?
    /// The vfio-user servers of devices that have a vfio-user socket.
    var vfioUserServers: [SourceID: VFIOUserServer] = [:]
    var controls: [Int32: ControlSession] = [:]
    /// Control clients that were sent one error line and are refused
    /// (Daemon+Refusal.swift), kept open until they close or a short
    /// deadline passes, so that they can read that line.
    var refusedControls: [Int32: RefusedClient] = [:]
    var vmmConnectedOnce = false
    var shutdownRequested = false
    /// SIGUSR1 (the unit's RestartKillSignal) or `upgrade`: exit leaving
    /// every kernel object to the next process instead of unmapping.
    var handOverRequested = false
    /// systemd's file descriptor store: what survives a restart.
    let fdStore: FDStore
    /// What this start took over from a previous process.
    var adoption = Adoption()
    /// Guest RAM's files as the bridge has them, for the mapping journals.
    private(set) lazy var memoryFiles = BridgeMemoryFiles(bridge: bridge)

    /// Where the event channel's time goes, cumulated over all requests:
    /// receive (recvmsg + framing), walk (decode, walk, merge: everything
    /// of a request but its ioctls), ioctl (backend calls), ack (encoding
    /// and sending the reply). `status` reports it.
    struct Stages {
        var receive: Int64 = 0
        var walk: Int64 = 0
        var ioctl: Int64 = 0
        var ack: Int64 = 0
        var requests = 0
    }
    var stages = Stages()
    /// One receive buffer for the event channel, allocated once: a fresh
    /// zero-filled 256 KiB array per read cost more than the read itself
    /// (found by `make bench`; see docs/BENCHMARKS.md).
    let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readChunk, alignment: 16)

    /// A slow control client may hold this much unsent output before it is
    /// dropped; it never blocks the others.
    static let maxQueuedBytes = 256 << 20
    /// A client (the VMM or a control client) with this many bytes of
    /// replies not yet taken is not read from until it takes some: one that
    /// sends requests and reads no reply then blocks in its own writes, and
    /// its replies held here stay bounded by this plus one read's worth.
    static let readPauseBytes = 4 << 20
    static let readChunk = 256 << 10

    /// `signals` must have been created on the main thread before any other
    /// thread started (the executable does it first thing), so that SIGTERM
    /// and SIGINT reach the daemon only through it. `kernel` is the VFIO
    /// kernel interface the type1 backend uses: the real one, or a fake in
    /// tests, which then see every open, ioctl and close of an attach.
    /// `reloadConfig` loads the configuration again when SIGHUP asks for a
    /// reload, as the start loaded it.
    public init(config: DaemonConfig, signals: SignalDescriptor, logger: Logger, logLevel: any LogLevelControl,
                metricsText: (@Sendable () -> String)? = nil, version: String = "dev",
                kernel: any VFIOKernel = LinuxVFIOKernel(),
                inherited: [(name: String, descriptor: FileDescriptor)] = [],
                reloadConfig: (() throws -> DaemonConfig)? = nil) throws {
        self.config = config
        self.reloadConfig = reloadConfig
        self.signals = signals
        self.logger = logger
        self.logLevel = logLevel
        self.metricsText = metricsText
        self.version = version
        metrics = DaemonMetrics(instance: config.name)
        metricsTextfile = config.metricsTextfile.map { MetricsTextfile(path: $0, intervalSeconds: config.metricsIntervalSeconds) }
        policy = PeerPolicy(uids: Set(config.allowedUIDs), gids: Set(config.allowedGIDs))
        store = StateStore(directory: config.stateDirectory)
        hostBackend = config.backend.makeHostBackend(config, kernel: kernel)
        fdStore = FDStore(inherited: inherited, logger: logger)
        // Until a VMM says otherwise (HELLO), assume a caching-mode IOMMU
        // with translation off: devices can be attached and nothing is mapped.
        bridge = try GuestIOMMU(caps: .make(), walkBudget: config.walkBudget, logger: logger)
    }

    deinit { receiveBuffer.deallocate() }

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs until SIGTERM, SIGINT or `shutdown`. Returns the exit status.
    public func run() -> Int32 {
        do {
            signal(SIGPIPE, SIG_IGN)
            try start()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            FileHandleStderr.write("vtdbridged: \(error)\n")
            stopListening()
            return 1
        }
        let watchdog = SystemdNotify.watchdogInterval()
        var nextWatchdog = watchdog.map { ContinuousClock.now + $0 / 2 }
        adoption.readyAtNanoseconds = Self.realtimeNanoseconds()
        statusReporter.record(currentStatus, at: .now)
        notify("READY=1\nSTATUS=\(statusLine)")
        if adoption.devices > 0 {
            logger.notice("restarted with every mapping kept", metadata: [
                "devices": "\(adoption.devices)", "mappings": "\(adoption.mappings)", "settled-calls": "\(adoption.settledCalls)",
            ])
        }
        logger.info("ready", metadata: ["event-socket": "\(config.eventSocket)", "control-socket": "\(config.controlSocket)",
                                        "devices": "\(devices.count)", "backend": "\(config.backend.rawValue)"])
        let poller = Poller()
        register(SignalClient(signals))
        while !shutdownRequested {
            // The earliest deadline, if any: with none, poll sleeps without
            // a timeout and no clock is read for it (issue 14).
            var due = nextWatchdog
            if !pendingDevices.isEmpty { due = Self.earlier(due, nextRetry) }
            if !refusedControls.isEmpty {
                for refused in refusedControls.values { due = Self.earlier(due, refused.deadline) }
            }
            if let textfile = metricsTextfile { due = Self.earlier(due, textfile.due) }
            if let held = statusReporter.due { due = Self.earlier(due, held) }
            var timeout: Int32 = -1
            var since: ContinuousClock.Instant?
            if let due {
                let now = roundNow
                // Whole milliseconds, rounded down as before; poll's own
                // rounding and the next round cover the remainder.
                timeout = Int32(clamping: max(0, now.duration(to: due).nanosecondCount) / 1_000_000)
                since = now
            }
            if let until = busyUntil {
                if roundNow < until { timeout = 0 } else { busyUntil = nil }
            }
            // poll(2) takes the whole set each call; what each client waits
            // for changes with its queues, so it is asked every round.
            poller.removeAll()
            for (fd, client) in polled {
                let interest = client.interest
                poller.add(fd, readable: interest.readable, writable: interest.writable)
            }
            do {
                _ = try poller.wait(timeoutMilliseconds: timeout, since: since)
            } catch {
                logger.critical("poll failed", metadata: ["error": "\(error)"])
                break
            }
            roundClock = nil
            // In place, in the Poller's own array: no list per round. The
            // services never touch the Poller; they change `polled`, which
            // only the next round reads.
            poller.forEachReady { event in
                // A client serviced earlier in this round may have closed
                // another (a reconnecting VMM drops the old session): only
                // what is still registered is serviced.
                polled[event.fd]?.service(event, daemon: self)
            }
            if !refusedControls.isEmpty { closeExpiredRefusals() }
            if !pendingDevices.isEmpty, roundNow >= nextRetry {
                retryPendingDevices()
                roundClock = nil
                nextRetry = roundNow + .seconds(1)
            }
            if let textfile = metricsTextfile, roundNow >= textfile.due {
                writeMetricsTextfile()
                roundClock = nil
            }
            if let due = nextWatchdog, roundNow >= due, let watchdog {
                notify("WATCHDOG=1")
                nextWatchdog = roundNow + watchdog / 2
            }
            // Whatever this round changed (a batch's mappings, an attach, the
            // VMM coming or going) reaches STATUS=, rate-limited.
            if !shutdownRequested { reportStatus() }
        }
        if handOverRequested {
            // The next process starts its counters from zero; the file keeps
            // this one's last values until it writes its own.
            writeMetricsTextfile()
            handOver()
            return Self.handOverExitStatus
        }
        shutdown()
        return 0
    }

    // MARK: start and stop

    private func start() throws {
        try store.prepare()
        for path in [config.eventSocket, config.controlSocket] {
            let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            // Best effort, for a hand-started daemon (systemd's
            // RuntimeDirectory= makes it for the unit); if it cannot be made,
            // listen reports the path with its errno.
            if !dir.isEmpty { _ = try? FileSystem.makeDirectory(dir, mode: 0o750) }
        }
        let events = try listener(named: "event-listener", path: config.eventSocket)
        eventListener = events
        register(ListenerClient(events) { $0.acceptVMM() })
        let controls = try listener(named: "control-listener", path: config.controlSocket)
        controlListener = controls
        register(ListenerClient(controls) { $0.acceptControl() })
        // Adopted mappings must not be synced against a guest state this
        // process has not heard yet: the VMM's READY resumes.
        if !fdStore.storedDevices.isEmpty { bridge.suspendSync() }
        for spec in config.devices {
            do {
                try attachOrAdopt(spec, persistent: false)
            } catch {
                failedDevices[spec.guest] = error.message
                if error.code == .vfioError { pendingDevices[spec.guest] = (spec, false) }
                logger.error("configured device not attached; retrying every second", metadata: ["device": "\(spec.guest)", "error": "\(error.message)"])
            }
        }
        let records: [StateStore.Record]
        do {
            records = try store.load()
        } catch {
            logger.error("recorded attachments not restored", metadata: ["error": "\(error)"])
            records = []
        }
        for record in records {
            do {
                let spec = try DeviceSpec.parse("\(record.host)=\(record.guest)\(record.quota.map { ",quota=\($0)" } ?? "")"
                                               + (record.vfioUser.map { ",vfio-user=\($0)" } ?? ""))
                guard devices[spec.guest] == nil else { continue }
                do {
                    try attachOrAdopt(spec, persistent: true)
                    logger.info("restored attachment", metadata: ["device": "\(spec.guest)", "host": "\(record.host)"])
                } catch {
                    failedDevices[spec.guest] = error.message
                    pendingDevices[spec.guest] = (spec, true)
                    logger.error("recorded attachment not restored yet; retrying every second",
                                 metadata: ["device": "\(record.guest)", "error": "\(error.message)"])
                }
            } catch {
                logger.error("recorded attachment not restored", metadata: ["device": "\(record.guest)", "error": "\(error)"])
            }
        }
        releaseUnclaimedDevices()
    }

    private func retryPendingDevices() {
        for (sid, pending) in pendingDevices.sorted(by: { $0.key < $1.key }) {
            guard devices[sid] == nil else {
                pendingDevices.removeValue(forKey: sid)
                continue
            }
            do {
                try attachDevice(pending.spec, persistent: pending.persistent)
                pendingDevices.removeValue(forKey: sid)
                logger.info("attached after retrying", metadata: ["device": "\(sid)"])
            } catch {
                failedDevices[sid] = error.message
                logger.debug("attach retry failed", metadata: ["device": "\(sid)", "error": "\(error.message)"])
            }
        }
    }

    private func stopListening() {
        for listener in [eventListener, controlListener].compactMap({ $0 }) {
            polled.removeValue(forKey: listener.fd)
            listener.close()
        }
        eventListener = nil
        controlListener = nil
    }

    /// SIGTERM: stop accepting; the in-flight request is already finished
    /// (one thread); send what replies are queued; unmap; close; exit 0.
    private func shutdown() {
        notify("STOPPING=1\nSTATUS=stopping: unmapping \(devices.count) device(s)")
        let mappings = mappingCount
        logger.info("shutting down", metadata: ["devices": "\(devices.count)"])
        stopListening()
        // Best effort: a peer that cannot take its last replies now loses them.
        flushClients()
        for sid in devices.keys.sorted() {
            stopVFIOUserServer(sid)
            let report = (try? bridge.detach(sid)) ?? SyncReport()
            for failure in report.failures {
                logger.error("unmap at shutdown failed", metadata: ["failure": "\(failure)"])
            }
            devices.removeValue(forKey: sid)?.close(logger: logger)
            metrics.record(report)
            metrics.forgetDevice(sid)
        }
        metrics.attachedDevices.record(devices.count)
        // The last values, unmaps of this stop included: what a scrape
        // after the stop reads (with the file's mtime telling its age).
        writeMetricsTextfile()
        closeClients()
        if fdStore.isAvailable {
            // A stop (not a restart: that is SIGUSR1) means the VM is going
            // away: nothing is left for a next process.
            fdStore.releaseAll()
            logger.notice("stopped: the VM is going away; every mapping was unmapped and the fd store released",
                          metadata: ["devices": "\(devices.count)", "mappings-unmapped": "\(mappings)"])
        } else {
            logger.info("stopped", metadata: ["mappings-unmapped": "\(mappings)"])
        }
    }

    /// Best effort, on the way out: a peer that cannot take its last
    /// replies now loses them.
    func flushClients() {
        if let vmm { _ = try? vmm.outbound.flush(to: vmm.connection) }
        for s in controls.values { _ = try? s.outbound.flush(to: s.connection) }
    }

    /// Closes the VMM's and every control client's connection.
    func closeClients() {
        vmm?.connection.close()
        for s in controls.values { s.connection.close() }
        controls.removeAll()
        for r in refusedControls.values { r.connection.close() }
        refusedControls.removeAll()
    }

    func handleSignals(_ signals: SignalDescriptor) {
        let received = (try? signals.read()) ?? []
        for signo in received {
            switch signo {
            case SIGTERM, SIGINT:
                logger.notice("signal received; stopping", metadata: ["signal": "\(signo == SIGTERM ? "SIGTERM" : "SIGINT")"])
                shutdownRequested = true
            case SIGUSR1:
                requestHandOver(reason: "SIGUSR1")
            case SIGHUP:
                logger.notice("signal received; reloading the configuration", metadata: ["signal": "SIGHUP"])
                reload()
            default:
                break
            }
        }
    }

    /// Ends the loop for a restart that keeps everything, if there is a store
    /// to keep it in. Returns whether it will happen.
    @discardableResult
    func requestHandOver(reason: String) -> Bool {
        guard fdStore.isAvailable else {
            logger.warning("a hand-over needs systemd's file descriptor store (NOTIFY_SOCKET and FileDescriptorStoreMax=); ignored",
                           metadata: ["reason": "\(reason)"])
            return false
        }
        logger.notice("handing over to a new process", metadata: ["reason": "\(reason)"])
        handOverRequested = true
        shutdownRequested = true
        return true
    }

    /// Starts polling `client`'s descriptor.
    func register(_ client: any PollClient) {
        precondition(polled[client.pollDescriptor] == nil, "descriptor \(client.pollDescriptor) is polled twice")
        polled[client.pollDescriptor] = client
    }

    /// Stops polling `client`'s descriptor; call before closing it.
    func unregister(_ client: any PollClient) {
        if polled[client.pollDescriptor] === client { polled.removeValue(forKey: client.pollDescriptor) }
    }

    func notify(_ state: String) {
        _ = SystemdNotify.send(state)
    }

    var currentStatus: DaemonStatus {
        DaemonStatus(devices: devices.count, vmmPhase: vmm?.phase.rawValue, mappings: mappingCount)
    }

    var statusLine: String { currentStatus.description }

    /// Sends STATUS= if it changed, at most once a second; a change held
    /// back is sent when `statusReporter.due` passes.
    ///
    /// The clock is read only when the status changed, and then at most
    /// once a round (`roundNow`).
    ///
    /// While a change is held, nothing is offered before `due`: the value
    /// current then is what goes out, so building the status for every
    /// request of a burst would only be thrown away (issue 14: 2.5K of 41K
    /// instructions per one-page INVALIDATE).
    func reportStatus(now: ContinuousClock.Instant? = nil) {
        if let due = statusReporter.due, (now ?? roundNow) < due { return }
        if let status = statusReporter.offer(currentStatus, now: now ?? roundNow) { notify("STATUS=\(status)") }
    }

    /// The time of this poll round: the latest stamp taken since poll
    /// returned (the event channel leaves its last one), else read now.
    /// Deadlines (status, watchdog, retries) are checked against it, so a
    /// round reads the clock at most once for them; a stamp at most one
    /// round's work old only makes a 1 s deadline fire that much later.
    var roundNow: ContinuousClock.Instant {
        if let roundClock { return roundClock }
        let now = ContinuousClock.now
        roundClock = now
        return now
    }

    /// Mappings the kernel holds for every attached device.
    var mappingCount: Int { devices.keys.reduce(0) { $0 + (bridge.spaces[$1]?.shadow.count ?? 0) } }
}
