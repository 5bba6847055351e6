import ArgumentParser
import Daemon
import Glibc
import Logging
import CoreMetrics
import Posix
import Prometheus
import UnixIO
import VTdBuildInfo

/// The daemon executable: parses flags, loads the config, bootstraps logging
/// and metrics (only executables do that), and runs the library's Daemon.
@main
struct VTdBridged: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtdbridged",
        abstract: "Bridge a VM's emulated Intel VT-d IOMMU to real VFIO containers.",
        discussion: """
        One instance serves one VM. It owns the VFIO containers of the devices assigned to \
        that VM, reads the guest's VT-d tables from shared guest RAM, and turns the guest's \
        invalidations into VFIO_IOMMU_MAP_DMA / UNMAP_DMA calls.

        Settings come from, highest priority first: these flags, VTDBRIDGE_* environment \
        variables, the JSON config file. Every key is described in docs/CONFIG.md.

        Sockets: the event channel (VMM) and the control socket (vtdbridgectl), see \
        docs/PROTOCOL.md. SIGTERM stops it gracefully: it finishes the request in flight, \
        unmaps, closes the containers and exits 0. SIGHUP reloads the config (the log level, \
        quotas and the device list; see docs/CONFIG.md, "Reloading").
        """,
        version: BuildInfo.versionLine(program: "vtdbridged")
    )

    @Option(name: .long, help: ArgumentHelp("JSON config file.", valueName: "PATH"))
    var config: String?

    @Option(name: .long, help: "Instance name (config key name).")
    var name: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (config key log.level).")
    var logLevel: String?

    @Option(name: .long, help: "vfio or dry-run (config key backend). dry-run maps nothing in any kernel.")
    var backend: String?

    @Option(name: .customLong("event-socket"), help: ArgumentHelp("Event channel socket (config key event-socket).", valueName: "PATH"))
    var eventSocket: String?

    @Option(name: .customLong("control-socket"), help: ArgumentHelp("Control socket (config key control.socket).", valueName: "PATH"))
    var controlSocket: String?

    @Option(name: .customLong("state-directory"), help: ArgumentHelp("Where runtime attachments are kept (config key state-directory).", valueName: "PATH"))
    var stateDirectory: String?

    @Option(name: .customLong("device"), help: ArgumentHelp("A device to attach at start (config key devices); repeatable.", valueName: "HOST=GUEST[,quota=N][,vfio-user=PATH]"))
    var devices: [String] = []

    @Flag(name: .customLong("check-config"), help: "Load and check the configuration (file, environment, flags) as a start would, print it in one line, and exit: 0 if it is valid, 78 if not. Opens no socket and no device.")
    var checkConfig = false

    func run() throws {
        // Block the signals the daemon handles before any other thread
        // could exist, so that every thread inherits the mask and they
        // arrive only on the daemon's signalfd. (The daemon runs on this one
        // thread; a library that started one later would inherit the mask.) A signal not blocked here runs its default
        // action: for SIGHUP that ends the process (exit 129) and leaves
        // the socket files behind.
        let signals: SignalDescriptor
        do {
            // SIGUSR1 is the unit's RestartKillSignal: hand over to the next
            // process (Daemon.handOver) instead of unmapping. SIGHUP is the
            // unit's ExecReload: reload the config (Daemon.reload).
            signals = try SignalDescriptor(signals: Daemon.handledSignals)
        } catch {
            FileHandleStderr.write("vtdbridged: \(error)\n")
            throw ExitCode(1)
        }
        var overrides: [String: String] = [:]
        overrides["name"] = name
        overrides["log.level"] = logLevel
        overrides["backend"] = backend
        overrides["event-socket"] = eventSocket
        overrides["control.socket"] = controlSocket
        overrides["state-directory"] = stateDirectory
        if !devices.isEmpty { overrides["devices"] = devices.joined(separator: " ") }

        // The same sources on every load: a reload (SIGHUP) reads the file
        // again, under the flags and environment this process started with.
        // Loading is synchronous, on this thread: bridging an async load
        // with a Task and a semaphore started Swift's cooperative pool (a
        // worker thread, its stack and its own malloc arena) for the
        // lifetime of the process, only to wait for it.
        let load = { [config, overrides] () throws -> DaemonConfig in
            try DaemonConfig.load(file: config, environment: Self.environment(), overrides: overrides)
        }
        let daemonConfig: DaemonConfig
        do {
            daemonConfig = try load()
        } catch {
            FileHandleStderr.write(LoggingBootstrap.errorLine("\(error)"))
            throw ExitCode(78)  // EX_CONFIG: systemd shows it as a configuration error
        }
        if checkConfig {
            print("vtdbridged: configuration OK: \(daemonConfig.summary)")
            return
        }

        let levels = SharedLogLevel(daemonConfig.logLevel)
        LoggingBootstrap.bootstrap(level: levels)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(DescribedPrometheusFactory(registry: registry))
        let logger = Logger(label: "vtdbridged.\(daemonConfig.name)")

        // What a previous process of this unit left in systemd's file
        // descriptor store (its listeners, containers, groups, devices and
        // mapping journals). Taken before anything else could be handed the
        // numbers, and never passed on to children.
        let inherited: [(name: String, descriptor: FileDescriptor)]
        do {
            inherited = try SystemdListenFDs.take()
        } catch {
            logger.error("descriptors passed by systemd not usable; starting without them", metadata: ["error": "\(error)"])
            inherited = []
        }
        if !inherited.isEmpty {
            logger.info("descriptors from the fd store", metadata: ["names": "\(inherited.map(\.name).sorted().joined(separator: ","))"])
        }

        let daemon: Daemon
        do {
            daemon = try Daemon(config: daemonConfig, signals: signals, logger: logger, logLevel: levels,
                                metricsText: {
                                    var buffer: [UInt8] = []
                                    registry.emit(into: &buffer)
                                    return String(decoding: buffer, as: UTF8.self)
                                }, version: BuildInfo.version, inherited: inherited, reloadConfig: load)
        } catch {
            FileHandleStderr.write("vtdbridged: \(error)\n")
            throw ExitCode(1)
        }
        let status = daemon.run()
        if status != 0 { throw ExitCode(status) }
    }

    static func environment() -> [String: String] {
        var env: [String: String] = [:]
        var p = Glibc.environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                env[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            p += 1
        }
        return env
    }
}
