import Logging
import VTd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which DMA backend the daemon drives.
public enum BackendKind: String, Sendable, CaseIterable {
    /// Real VFIO type1 containers.
    case vfio
    /// Maps nothing; records what it would have mapped (tests, rehearsals).
    case dryRun = "dry-run"
}

/// The configuration of one vtdbridged instance (one VM).
///
/// Every key, its default, environment variable and flag: docs/CONFIG.md.
/// Sources, highest priority first: command-line flags (`overrides`), the
/// environment (`VTDBRIDGE_…`), the JSON config file, the defaults.
public struct DaemonConfig: Sendable, Equatable {
    /// "name": the instance name; [A-Za-z0-9_.-]{1,64}. Default "default".
    public var name: String
    /// "event-socket": default /run/vtd-bridge/<name>/event.sock.
    public var eventSocket: String
    /// "control.socket": default /run/vtd-bridge/<name>/control.sock.
    public var controlSocket: String
    /// "control.group": both socket files get mode 0660 and this group. Nil:
    /// the daemon's own group.
    public var controlGroup: gid_t?
    /// "access.uids": peer uids allowed on both sockets. Default [0, getuid()].
    public var allowedUIDs: [uid_t]
    /// "access.gids": peer gids allowed on both sockets. Default
    /// [controlGroup] when it is set, else [].
    public var allowedGIDs: [gid_t]
    /// "state-directory": default /var/lib/vtd-bridge/<name>.
    public var stateDirectory: String
    /// "log.level": default .info.
    public var logLevel: Logger.Level
    /// "backend": default .vfio.
    public var backend: BackendKind
    /// "vfio.device-directory": default /dev/vfio.
    public var vfioDeviceDirectory: String
    /// "vfio.sysfs": default /sys.
    public var sysfsRoot: String
    /// "devices": attached at start, in order.
    public var devices: [DeviceSpec]
    /// "mapping-quota": default most mappings per device; nil for no limit
    /// (0 in the config).
    public var mappingQuota: Int?
    /// "walk-budget": most guest paging entries one sync of one device may
    /// read; default `WalkBudget.defaultEntries` (4,194,304). A walk that
    /// reaches it stops with a walk-budget-exceeded fault and leaves the
    /// mappings beyond the stop point as they were.
    public var walkBudget: Int
    /// "control.max-clients": default 16.
    public var maxClients: Int
    /// "event-busy-poll-us": default 0 (off). After a VMM request the loop
    /// polls without sleeping for this long, so the next request is picked
    /// up without a wake-up (a few µs natively, up to ~0.5 ms in a TCG
    /// guest). It costs a core while the VMM is busy; see BENCHMARKS.md.
    public var busyPollMicroseconds: Int
    /// "metrics.textfile": where the metrics are written, in Prometheus text
    /// format, for node_exporter's textfile collector; nil (the default):
    /// not written. Written whole to `<path>.tmp` and renamed over the
    /// path, so the collector never reads half a file.
    public var metricsTextfile: String?
    /// "metrics.interval": seconds between two writes of the textfile;
    /// default 15, a quarter of Prometheus' default scrape interval.
    public var metricsIntervalSeconds: Int

    /// Upper bound of "control.max-clients": each client holds a descriptor,
    /// and the unit's default soft RLIMIT_NOFILE is 1024.
    public static let maximumClientsLimit = 1024

    /// The defaults for an instance called `name` (not validated).
    public init(name: String = "default") {
        self.name = name
        self.eventSocket = Self.defaultEventSocket(name: name)
        self.controlSocket = Self.defaultControlSocket(name: name)
        self.controlGroup = nil
        self.allowedUIDs = Self.defaultAllowedUIDs()
        self.allowedGIDs = []
        self.stateDirectory = Self.defaultStateDirectory(name: name)
        self.logLevel = .info
        self.backend = .vfio
        self.vfioDeviceDirectory = "/dev/vfio"
        self.sysfsRoot = "/sys"
        self.devices = []
        self.mappingQuota = nil
        self.walkBudget = WalkBudget.defaultEntries
        self.maxClients = 16
        self.busyPollMicroseconds = 0
        self.metricsTextfile = nil
        self.metricsIntervalSeconds = 15
    }

    public static func defaultEventSocket(name: String) -> String { "/run/vtd-bridge/\(name)/event.sock" }
    public static func defaultControlSocket(name: String) -> String { "/run/vtd-bridge/\(name)/control.sock" }
    public static func defaultStateDirectory(name: String) -> String { "/var/lib/vtd-bridge/\(name)" }
    /// [0, getuid()] without duplicates: root, and whoever runs the daemon.
    public static func defaultAllowedUIDs() -> [uid_t] { getuid() == 0 ? [0] : [0, getuid()] }

    /// The quota that applies to `device`: its own, else "mapping-quota".
    public func quota(for device: DeviceSpec) -> Int? { device.quota ?? mappingQuota }

    /// Reads the configuration: `overrides` (flag values the executable
    /// parsed, keyed by config key, e.g. ["log.level": "debug", "name": "vm0"]),
    /// then `environment` (only `VTDBRIDGE_…` variables are read), then the
    /// JSON file at `file` (nil: no file, defaults only), then the defaults.
    ///
    /// The first problem found is thrown, naming the key, where its value
    /// came from and what is expected. Nothing but the config file and the
    /// user and group databases is read: no device is opened.
    public static func load(
        file: String?,
        environment: [String: String],
        overrides: [String: String]
    ) throws(ConfigError) -> DaemonConfig {
        let sources = try ConfigSources.make(file: file, environment: environment, overrides: overrides)
        return try ConfigResolver(sources: sources).resolve()
    }
}

/// Turns the raw values of the sources into a checked DaemonConfig.
struct ConfigResolver {
    let sources: ConfigSources

    private func info(_ key: String) -> ConfigKeyInfo {
        guard let info = DaemonConfig.keyInfo(key) else { preconditionFailure("no config key \(key)") }
        return info
    }

    private func fail(_ info: ConfigKeyInfo, _ source: String, _ message: String) -> ConfigError {
        ConfigError(key: info.key, message: message, source: source)
    }

    func resolve() throws(ConfigError) -> DaemonConfig {
        var config = DaemonConfig()

        config.name = try string("name").map { (value, source) throws(ConfigError) in
            try checkName(value, source: source)
            return value
        } ?? "default"

        config.eventSocket = try path("event-socket", socket: true) ?? DaemonConfig.defaultEventSocket(name: config.name)
        config.controlSocket = try path("control.socket", socket: true) ?? DaemonConfig.defaultControlSocket(name: config.name)
        config.stateDirectory = try path("state-directory", socket: false) ?? DaemonConfig.defaultStateDirectory(name: config.name)
        config.vfioDeviceDirectory = try path("vfio.device-directory", socket: false) ?? "/dev/vfio"
        config.sysfsRoot = try path("vfio.sysfs", socket: false) ?? "/sys"

        if config.eventSocket == config.controlSocket {
            let found = try sources.lookup(info("control.socket"), as: [.string])
            throw fail(info("control.socket"), found?.source ?? "default",
                       "\"\(config.controlSocket)\" is also the event-socket path; expected two different paths")
        }

        config.controlGroup = try controlGroup()
        config.allowedUIDs = try idList("access.uids", isGroup: false) ?? DaemonConfig.defaultAllowedUIDs()
        config.allowedGIDs = try idList("access.gids", isGroup: true) ?? (config.controlGroup.map { [$0] } ?? [])
        if config.allowedUIDs.isEmpty && config.allowedGIDs.isEmpty {
            let found = try sources.lookup(info("access.uids"), as: [.stringArray, .intArray])
            throw fail(info("access.uids"), found?.source ?? "default",
                       "is empty and so is access.gids: no client could ever connect; expected at least one uid or gid")
        }

        config.logLevel = try string("log.level").map { (value, source) throws(ConfigError) in
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw fail(info("log.level"), source, "\"\(value)\" is not a log level; expected \(info("log.level").expected)")
            }
            return level
        } ?? .info

        config.backend = try string("backend").map { (value, source) throws(ConfigError) in
            guard let backend = BackendKind(rawValue: value.lowercased()) else {
                throw fail(info("backend"), source, "\"\(value)\" is not a backend; expected \(info("backend").expected)")
            }
            return backend
        } ?? .vfio

        config.devices = try devices()
        if config.backend == .dryRun, let served = config.devices.first(where: { $0.vfioUserSocket != nil }) {
            throw ConfigError(key: "devices", message:
                "\"\(served)\" serves the device over vfio-user, but the dry-run backend opens no device to serve; use backend vfio, or drop vfio-user=")
        }

        if let found = try integer("mapping-quota") {
            let (value, source) = found
            guard value >= 0 else {
                throw fail(info("mapping-quota"), source, "\(value) is negative; expected \(info("mapping-quota").expected)")
            }
            config.mappingQuota = value == 0 ? nil : value
        }

        if let found = try integer("walk-budget") {
            let (value, source) = found
            guard value >= WalkBudget.minimumEntries else {
                throw fail(info("walk-budget"), source, "\(value) is too small; expected \(info("walk-budget").expected)")
            }
            config.walkBudget = value
        }

        if let found = try integer("control.max-clients") {
            let (value, source) = found
            guard (1...DaemonConfig.maximumClientsLimit).contains(value) else {
                throw fail(info("control.max-clients"), source, "\(value) is out of range; expected \(info("control.max-clients").expected)")
            }
            config.maxClients = value
        }

        if let found = try integer("event-busy-poll-us") {
            let (value, source) = found
            guard (0...10_000).contains(value) else {
                throw fail(info("event-busy-poll-us"), source, "\(value) is out of range; expected \(info("event-busy-poll-us").expected)")
            }
            config.busyPollMicroseconds = value
        }

        if let textfile = try path("metrics.textfile", socket: false) {
            // node_exporter's textfile collector reads only *.prom files
            // (and ignores the .tmp the daemon writes first).
            guard textfile.hasSuffix(".prom"), textfile.count > "/.prom".count, !textfile.hasSuffix("/.prom") else {
                let found = try sources.lookup(info("metrics.textfile"), as: [.string])
                throw fail(info("metrics.textfile"), found?.source ?? "default",
                           "\"\(textfile)\" does not end in a file name with .prom, the only files node_exporter's textfile collector reads; expected \(info("metrics.textfile").expected)")
            }
            config.metricsTextfile = textfile
        }

        if let found = try integer("metrics.interval") {
            let (value, source) = found
            guard (1...3600).contains(value) else {
                throw fail(info("metrics.interval"), source, "\(value) is out of range; expected \(info("metrics.interval").expected)")
            }
            config.metricsIntervalSeconds = value
        }
        return config
    }

    // MARK: - Typed reads

    private func string(_ key: String) throws(ConfigError) -> (String, String)? {
        guard let found = try sources.lookup(info(key), as: [.string]) else { return nil }
        guard case .string(let value) = found.content else { throw unexpected(key, found) }
        return (value, found.source)
    }

    private func integer(_ key: String) throws(ConfigError) -> (Int, String)? {
        guard let found = try sources.lookup(info(key), as: [.int]) else { return nil }
        guard case .int(let value) = found.content else { throw unexpected(key, found) }
        return (value, found.source)
    }

    private func unexpected(_ key: String, _ found: ConfigSources.Found) -> ConfigError {
        fail(info(key), found.source, "has a value of an unexpected kind; expected \(info(key).expected)")
    }

    // MARK: - Checks

    private func checkName(_ name: String, source: String) throws(ConfigError) {
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "_.-".unicodeScalars.contains(scalar))
        }
        guard !name.isEmpty, name.unicodeScalars.count <= 64, allowed else {
            let why = name.isEmpty ? "is empty" : name.unicodeScalars.count > 64 ? "\"\(name)\" is longer than 64 characters" : "\"\(name)\" has a character outside A-Z a-z 0-9 _ . -"
            throw fail(info("name"), source, "\(why); expected \(info("name").expected)")
        }
        // The name becomes a path component (/run/vtd-bridge/<name>/).
        guard name != ".", name != ".." else {
            throw fail(info("name"), source, "\"\(name)\" would name a parent or the same directory in the default paths; expected \(info("name").expected)")
        }
    }

    /// A path key: absolute, no NUL; a socket path fits in sun_path.
    private func path(_ key: String, socket: Bool) throws(ConfigError) -> String? {
        guard let found = try string(key) else { return nil }
        let (value, source) = found
        let info = info(key)
        guard !value.isEmpty else { throw fail(info, source, "is empty; expected \(info.expected)") }
        guard value.hasPrefix("/") else {
            throw fail(info, source, "\"\(value)\" is a relative path; expected \(info.expected) (the daemon's working directory is not meaningful)")
        }
        guard !value.utf8.contains(0) else { throw fail(info, source, "contains a NUL byte; expected \(info.expected)") }
        // sockaddr_un.sun_path is 108 bytes, including the terminating NUL.
        if socket && value.utf8.count > 107 {
            throw fail(info, source, "\"\(value)\" is \(value.utf8.count) bytes; expected \(info.expected)")
        }
        return value
    }

    private func controlGroup() throws(ConfigError) -> gid_t? {
        let info = info("control.group")
        guard let found = try sources.lookup(info, as: [.string, .int]) else { return nil }
        switch found.content {
        case .string(let text): return try resolveID(text, isGroup: true, info: info, source: found.source)
        case .int(let number): return try checkID(number, isGroup: true, info: info, source: found.source)
        default: throw unexpected(info.key, found)
        }
    }

    /// access.uids / access.gids: names resolved, duplicates dropped, order kept.
    private func idList(_ key: String, isGroup: Bool) throws(ConfigError) -> [UInt32]? {
        let info = info(key)
        guard let found = try sources.lookup(info, as: [.stringArray, .intArray]) else { return nil }
        var ids: [UInt32] = []
        switch found.content {
        case .stringArray(let items):
            for item in ConfigSources.splitList(items, kind: info.kind) {
                ids.append(try resolveID(item, isGroup: isGroup, info: info, source: found.source))
            }
        case .intArray(let numbers):
            for number in numbers {
                ids.append(try checkID(number, isGroup: isGroup, info: info, source: found.source))
            }
        default:
            throw unexpected(key, found)
        }
        var unique: [UInt32] = []
        for id in ids where !unique.contains(id) { unique.append(id) }
        return unique
    }

    private func checkID(_ number: Int, isGroup: Bool, info: ConfigKeyInfo, source: String) throws(ConfigError) -> UInt32 {
        let what = isGroup ? "gid" : "uid"
        guard number >= 0, UInt64(number) <= ConfigIdentity.maximumID else {
            throw fail(info, source, "\(number) is not a valid \(what); expected \(info.expected) from 0 to \(ConfigIdentity.maximumID)")
        }
        return UInt32(number)
    }

    private func resolveID(_ text: String, isGroup: Bool, info: ConfigKeyInfo, source: String) throws(ConfigError) -> UInt32 {
        let item = ConfigText.trim(text)
        if ConfigText.isDecimal(item) {
            guard let number = Int(item) else {
                throw fail(info, source, "\(item) is not a valid \(isGroup ? "gid" : "uid"); expected \(info.expected)")
            }
            return try checkID(number, isGroup: isGroup, info: info, source: source)
        }
        guard !item.isEmpty else { throw fail(info, source, "has an empty entry; expected \(info.expected)") }
        if isGroup {
            switch ConfigIdentity.lookupGroup(item) {
            case .found(let gid): return gid
            case .notFound:
                throw fail(info, source, "no group named \"\(item)\" on this system; expected a group name from /etc/group (getent group) or a numeric gid")
            case .failed(let code):
                throw fail(info, source, "looking up group \"\(item)\" failed: \(String(cString: strerror(code))); expected \(info.expected)")
            }
        } else {
            switch ConfigIdentity.lookupUser(item) {
            case .found(let uid): return uid
            case .notFound:
                throw fail(info, source, "no user named \"\(item)\" on this system; expected a user name from /etc/passwd (getent passwd) or a numeric uid")
            case .failed(let code):
                throw fail(info, source, "looking up user \"\(item)\" failed: \(String(cString: strerror(code))); expected \(info.expected)")
            }
        }
    }

    private func devices() throws(ConfigError) -> [DeviceSpec] {
        let info = info("devices")
        guard let found = try sources.lookup(info, as: [.stringArray]) else { return [] }
        guard case .stringArray(let raw) = found.content else { throw unexpected(info.key, found) }
        let entries = ConfigSources.splitList(raw, kind: info.kind)
        var specs: [DeviceSpec] = []
        for (index, entry) in entries.enumerated() {
            let spec: DeviceSpec
            do {
                spec = try DeviceSpec.parse(entry)
            } catch {
                throw fail(info, found.source, "entry \(index + 1) \(error.message)")
            }
            if let earlier = specs.firstIndex(where: { $0.guest == spec.guest }) {
                throw fail(info, found.source,
                           "entry \(index + 1) \"\(entry)\" uses guest source-id \(spec.guest), already used by entry \(earlier + 1) \"\(specs[earlier])\"; expected each guest source-id once")
            }
            if let earlier = specs.firstIndex(where: { $0.host == spec.host }) {
                throw fail(info, found.source,
                           "entry \(index + 1) \"\(entry)\" attaches host \(spec.host), already attached by entry \(earlier + 1) \"\(specs[earlier])\"; expected each host device once")
            }
            if let socket = spec.vfioUserSocket, let earlier = specs.firstIndex(where: { $0.vfioUserSocket == socket }) {
                throw fail(info, found.source,
                           "entry \(index + 1) \"\(entry)\" serves vfio-user at \(socket), already used by entry \(earlier + 1) \"\(specs[earlier])\"; expected one socket per device")
            }
            specs.append(spec)
        }
        return specs
    }
}
