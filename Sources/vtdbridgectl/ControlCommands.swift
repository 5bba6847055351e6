import ArgumentParser
import Glibc
import Posix
import VTdBridgeClient
import Wire

/// Where the daemon is, and how to print.
struct ControlOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's control socket (default /run/vtd-bridge/NAME/control.sock).", valueName: "PATH"))
    var socket: String?

    @Option(name: .long, help: "The daemon instance (vtdbridged@NAME).")
    var name = "default"

    @Flag(name: .long, help: "Print the daemon's JSON reply, for scripts.")
    var json = false

    var path: String { socket ?? "/run/vtd-bridge/\(name)/control.sock" }

    /// Runs one command and prints its result; a daemon error exits 1 with
    /// its code and message on stderr.
    func run(_ command: String, _ arguments: [String: JSONValue] = [:], render: (JSONValue) -> String) throws {
        let result: Result<JSONValue, ControlError>
        do {
            let client = try ControlClient(path: path)
            // A descriptor in the reply (attach's device fd) is of no use
            // here; it closes as the tuple goes.
            let (r, _) = try client.call(command, arguments)
            result = r
        } catch {
            FileHandleStderr.write("vtdbridgectl: \(error)\n")
            throw ExitCode(2)
        }
        switch result {
        case let .success(value):
            print(json ? value.serialized : render(value), terminator: json ? "\n" : "")
        case let .failure(error):
            if json {
                print(ControlCodec.errorLine(id: nil, error: error), terminator: "")
            }
            FileHandleStderr.write("vtdbridgectl \(command): \(error.code): \(error.message)\n")
            throw ExitCode(1)
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the devices, their mappings and faults, and the VMM connection.")
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
            out += ", \(v?["memory-regions"]?.intValue ?? 0) RAM region(s), \(byteText(UInt64(v?["memory-bytes"]?.int64Value ?? 0)))\n"
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
                                 String(d["mappings"]?.intValue ?? 0), byteText(UInt64(d["mapped-bytes"]?.int64Value ?? 0)),
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
            return out
        }
    }
}

struct Mappings: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the mappings the daemon holds for a device (same JSON as walk --json).")
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String

    func run() throws {
        try options.run("mappings", ["guest": .string(guest)]) { r in
            var out = "device \(r["device"]?.stringValue ?? guest): \(r["mode"]?.stringValue ?? "?")"
            if let d = r["domain"]?.intValue { out += ", domain \(d)" }
            if let l = r["levels"]?.intValue { out += ", \(l)-level" }
            let maps = r["mappings"]?.arrayValue ?? []
            out += "\n\(maps.count) mapping(s)\n"
            if !maps.isEmpty {
                var rows = [["IOVA", "GPA", "SIZE", "PERM"]]
                for m in maps {
                    rows.append([m["iova"]?.stringValue ?? "?", m["gpa"]?.stringValue ?? "?", m["size"]?.stringValue ?? "?",
                                 (m["read"]?.boolValue == true ? "r" : "-") + (m["write"]?.boolValue == true ? "w" : "-")])
                }
                out += table(rows)
            }
            let faults = r["faults"]?.arrayValue ?? []
            if !faults.isEmpty {
                out += "\(faults.count) recent fault(s):\n"
                for f in faults { out += "  \(f["reason"]?.stringValue ?? "?") iova=\(f["iova"]?.stringValue ?? "-"): \(f["detail"]?.stringValue ?? "")\n" }
            }
            return out
        }
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach a host device to a guest source-id.",
        discussion: "Opens the device's VFIO group, checks it is viable, gives it its own container, and syncs it from the guest tables. Recorded in the state directory; restored after a restart.")
    @OptionGroup var options: ControlOptions
    @Argument(help: ArgumentHelp("The host device: a PCI address, or group:N.", valueName: "HOST")) var host: String
    @Argument(help: ArgumentHelp("The guest source-id.", valueName: "BB:DD.F")) var guest: String
    @Option(help: "Most mappings for this device.") var quota: Int?
    @Option(name: .customLong("vfio-user"),
            help: ArgumentHelp("Serve the device to a vfio-user client (QEMU's vfio-user-pci) at this absolute socket path; its DMA_MAP/DMA_UNMAP then feed the device's mappings.", valueName: "PATH"))
    var vfioUser: String?

    func run() throws {
        var args: [String: JSONValue] = ["guest": .string(guest)]
        if host.hasPrefix("group:") {
            guard let n = Int(host.dropFirst(6)) else { throw ValidationError("\(host): expected group:N") }
            args["group"] = .int(Int64(n))
        } else {
            args["host"] = .string(host)
        }
        if let quota { args["quota"] = .int(Int64(quota)) }
        if let vfioUser { args["vfio-user"] = .string(vfioUser) }
        try options.run("attach", args) { r in
            "attached \(r["host"]?.stringValue ?? host) as guest \(r["guest"]?.stringValue ?? guest) (\(r["backend"]?.stringValue ?? "?") backend, \(r["mappings"]?.intValue ?? 0) mapping(s))"
                + (r["vfio-user"]?.stringValue.map { ", vfio-user at \($0)" } ?? "") + "\n"
        }
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unmap everything of a device and release it.")
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
        abstract: "Re-read the guest tables and sync (one device, or --all).",
        discussion: "Over unchanged tables a replay makes no kernel call.")
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
    static let configuration = CommandConfiguration(abstract: "Print the daemon's metrics (Prometheus text format).")
    @OptionGroup var options: ControlOptions

    func run() throws {
        try options.run("metrics") { $0["text"]?.stringValue ?? "" }
    }
}

struct LogLevel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log-level", abstract: "Show or set the daemon's log level.")
    @OptionGroup var options: ControlOptions
    @Argument(help: "trace, debug, info, notice, warning, error or critical.") var level: String?

    func run() throws {
        var args: [String: JSONValue] = [:]
        if let level { args["level"] = .string(level) }
        try options.run("log-level", args) { "log level: \($0["level"]?.stringValue ?? "?")\n" }
    }
}

struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the daemon as SIGTERM would: unmap, close, exit 0.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        try options.run("shutdown") { _ in "vtdbridged is stopping\n" }
    }
}

func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = [Int](repeating: 0, count: first.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
        }.joined()
    }.joined(separator: "\n") + "\n"
}

func byteText(_ n: UInt64) -> String {
    if n >= 1 << 30 { return "\(n >> 30)G" + (n % (1 << 30) == 0 ? "" : "+") }
    if n >= 1 << 20 { return "\(n >> 20)M" + (n % (1 << 20) == 0 ? "" : "+") }
    if n >= 1 << 10 { return "\(n >> 10)K" + (n % (1 << 10) == 0 ? "" : "+") }
    return "\(n)"
}
