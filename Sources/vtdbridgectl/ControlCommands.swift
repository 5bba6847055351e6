import ArgumentParser
import Glibc
import Posix
import VTdBridgeClient
import Wire

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the devices, their mappings and faults, and the VMM connection.",
        discussion: """
        One line for the daemon (instance, version, backend), one for the VMM's event \
        connection (session, root table, translation, guest RAM), then a table of the \
        attached devices: guest source-id, host device, VFIO group, guest domain, mode, \
        mappings and the bytes they cover, DMA mappings the kernel still allows, and \
        faults by reason. Devices of the config that could not be attached follow, with \
        the reason, and what the last reload (SIGHUP) did. With --json, the daemon's reply as is (docs/PROTOCOL.md §2.3).
        """)
    @OptionGroup var options: ControlOptions

    func run() throws {
        try options.run("status") { s in
            var out = "vtdbridged \(s["name"]?.stringValue ?? "?") (\(s["version"]?.stringValue ?? "?")), backend \(s["backend"]?.stringValue ?? "?")\n"
            let v = s["vmm"]
            if v?["connected"]?.boolValue == true {
                out += "VMM: connected"
                if let pid = v?["pid"]?.intValue { out += " (pid \(pid))" }
                out += ", session \(v?["session"]?.stringValue ?? "?")"
            } else {
                out += "VMM: not connected"
            }
            if let root = v?["root-table"]?.stringValue { out += ", root table \(root)" }
            out += ", translation \(v?["translation"]?.boolValue == true ? "on" : "off")"
            out += ", \(v?["memory-regions"]?.intValue ?? 0) RAM region(s), \(ByteSize.text(UInt64(v?["memory-bytes"]?.int64Value ?? 0)))\n"
            let devices = s["devices"]?.arrayValue ?? []
            if devices.isEmpty {
                out += "no device attached\n"
            } else {
                var rows = [["GUEST", "HOST", "GROUP", "DOMAIN", "MODE", "MAPPINGS", "BYTES", "DMA-AVAIL", "FAULTS"]]
                for d in devices {
                    var faults = (d["faults"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.intValue ?? 0)" }.joined(separator: ",")
                    if faults.isEmpty { faults = "-" }
                    rows.append([d["guest"]?.stringValue ?? "?", d["host"]?.stringValue ?? "?", d["group"]?.intValue.map(String.init) ?? "-",
                                 d["domain"]?.intValue.map(String.init) ?? "-", d["mode"]?.stringValue ?? "?",
                                 String(d["mappings"]?.intValue ?? 0), ByteSize.text(UInt64(d["mapped-bytes"]?.int64Value ?? 0)),
                                 d["dma-available"]?.intValue.map(String.init) ?? "-", faults])
                }
                out += table(rows)
                for d in devices {
                    guard let vu = d["vfio-user"], vu.objectValue != nil else { continue }
                    out += "\(d["guest"]?.stringValue ?? "?") vfio-user \(vu["socket"]?.stringValue ?? "?"): "
                    out += vu["connected"]?.boolValue == true ? "client pid \(vu["pid"]?.intValue ?? 0)" : "no client"
                    out += ", \(vu["dma-maps"]?.intValue ?? 0) DMA_MAP, \(vu["dma-unmaps"]?.intValue ?? 0) DMA_UNMAP"
                    out += " (\(vu["straddled-regions"]?.intValue ?? 0) cut at an edge, \(vu["empty-unmaps"]?.intValue ?? 0) of nothing)"
                    out += ", \(vu["maps-without-file"]?.intValue ?? 0) without a file, \(vu["refused"]?.intValue ?? 0) refused\n"
                }
            }
            for f in s["failed-devices"]?.arrayValue ?? [] {
                out += "not attached: \(f["guest"]?.stringValue ?? "?"): \(f["error"]?.stringValue ?? "?")\n"
            }
            if let reload = s["last-reload"], reload.objectValue != nil { out += Self.lastReload(reload) }
            return out
        }
    }

    /// The last SIGHUP's outcome (status's "last-reload", PROTOCOL.md §2.3),
    /// in the words of the daemon's own log line.
    static func lastReload(_ r: JSONValue) -> String {
        if r["outcome"]?.stringValue == "refused" {
            return "last reload refused, the running configuration is kept: \(r["error"]?.stringValue ?? "?")\n"
        }
        let changes = (r["changes"]?.arrayValue ?? []).compactMap(\.stringValue)
        var out = "last reload: " + (changes.isEmpty ? "no change" : changes.joined(separator: "; "))
        let restart = (r["needs-restart"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !restart.isEmpty { out += "; needs a restart (kept as running): " + restart.joined(separator: ", ") }
        let failures = (r["failures"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !failures.isEmpty { out += "; failed: " + failures.joined(separator: "; ") }
        return out + "\n"
    }
}

struct Mappings: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the mappings the daemon holds for one device.",
        discussion: """
        Prints the device's mode, guest domain and table depth, its mappings (IOVA, \
        guest-physical address, size, read/write) and its recent faults, exactly as the \
        daemon holds them in the kernel. The table and the JSON (--json) are those of \
        walk, so the daemon's view and a fresh walk of the guest's tables compare line \
        by line.
        """)
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String

    func run() throws {
        try options.run("mappings", ["guest": .string(guest)]) { TranslationText.render($0, device: guest) }
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach a host device to a guest source-id.",
        discussion: """
        Opens the device's VFIO group, checks that the group is viable, gives the device \
        a container of its own and syncs it from the guest's tables. The attachment is \
        recorded in the state directory and restored after a restart. HOST is a PCI \
        address (0000:01:00.0) or a VFIO group (group:12).
        """)
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The host device: a PCI address, or group:N.", valueName: "HOST")) var host: String
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String
    // Unconditional: "-5" is the option's value, to be refused as such, not
    // an unknown option that leaves --quota without one.
    @Option(parsing: .unconditional, help: ArgumentHelp("Most mappings this device may hold (a positive number).", valueName: "N"))
    var quota: Int?
    @Option(name: .customLong("vfio-user"),
            help: ArgumentHelp("Serve the device to a vfio-user client (QEMU's vfio-user-pci) at this absolute socket path; its DMA_MAP/DMA_UNMAP then feed the device's mappings.", valueName: "PATH"))
    var vfioUser: String?

    /// The request's arguments; nil when HOST is neither form.
    var arguments: [String: JSONValue]? {
        var args = AttachArguments.naming(host: host, guest: guest)
        if let quota { args?["quota"] = .int(Int64(quota)) }
        if let vfioUser { args?["vfio-user"] = .string(vfioUser) }
        return args
    }

    func validate() throws {
        if arguments == nil {
            throw ValidationError("HOST \(host): expected a PCI address (0000:01:00.0) or group:N with a decimal group number")
        }
        if let quota, quota <= 0 {
            throw ValidationError("--quota \(quota): the value is invalid; give the most mappings as a positive number")
        }
    }

    func run() throws {
        try options.run("attach", arguments ?? [:]) { r in
            "attached \(r["host"]?.stringValue ?? host) as guest \(r["guest"]?.stringValue ?? guest) (\(r["backend"]?.stringValue ?? "?") backend, \(r["mappings"]?.intValue ?? 0) mapping(s))"
                + (r["vfio-user"]?.stringValue.map { ", vfio-user at \($0)" } ?? "") + "\n"
        }
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unmap everything of a device and release it.",
        discussion: """
        Every mapping of the device is unmapped, its container, group and device are \
        closed, and its attachment is forgotten (a restart does not restore it). A device \
        of the config file comes back only when the daemon starts again.
        """)
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String

    func run() throws {
        try options.run("detach", ["guest": .string(guest)]) { r in
            "detached \(guest): \(r["unmapped"]?.intValue ?? 0) mapping(s) removed\n"
        }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the guest's tables and sync (one device, or --all).",
        discussion: """
        Walks the guest's VT-d tables again and makes the kernel's mappings equal to \
        them. Over unchanged tables a replay makes no kernel call, so it is safe while \
        the device does DMA. Prints the maps, unmaps and faults it caused.
        """)
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String?
    @Flag(help: "Every device.") var all = false

    func validate() throws {
        if all == (guest != nil) { throw ValidationError("give a guest source-id or --all") }
    }

    func run() throws {
        let args: [String: JSONValue] = all ? ["all": true] : ["guest": .string(guest!)]
        try options.run("replay", args) { r in
            var out = "replay: \(r["maps"]?.intValue ?? 0) map(s), \(r["unmaps"]?.intValue ?? 0) unmap(s), \(r["faults"]?.intValue ?? 0) fault(s)\n"
            for f in r["failures"]?.arrayValue ?? [] { out += "  failed: \(f["message"]?.stringValue ?? "?")\n" }
            return out
        }
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's metrics (Prometheus text format).",
        discussion: "The same text a Prometheus scrape would read: counters of invalidations, maps, unmaps and faults, batch durations, mappings per device.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        try options.run("metrics") { $0["text"]?.stringValue ?? "" }
    }
}

struct LogLevel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-level",
        abstract: "Show or set the daemon's log level.",
        discussion: "Without LEVEL, prints the current level. A level set here lasts until the daemon stops; the config key log.level sets it at start.")
    @OptionGroup var options: ControlOptions
    @Argument(help: "trace, debug, info, notice, warning, error or critical.") var level: String?

    func run() throws {
        var args: [String: JSONValue] = [:]
        if let level { args["level"] = .string(level) }
        try options.run("log-level", args) { "log level: \($0["level"]?.stringValue ?? "?")\n" }
    }
}

struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop the daemon as SIGTERM would: unmap, close, exit 0.",
        discussion: "Under systemd, prefer systemctl stop vtdbridged@NAME. The unit restarts only a daemon that failed (Restart=on-failure), so after shutdown the instance stays down until started again.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        try options.run("shutdown") { _ in "vtdbridged is stopping\n" }
    }
}
