import ArgumentParser
import Bridge
import Foundation
import Glibc
import Posix
import VTd
import VTdBridgeClient
import VTdBuildInfo
import Wire

@main
struct VTdBridgeSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtdbridge-sim",
        abstract: "A VMM and its guest, simulated, driving vtdbridged.",
        discussion: """
        The simulator creates guest RAM as a memfd, writes VT-d root, context and page \
        tables into it as Linux's intel-iommu driver does, connects to the daemon's event \
        channel as a VMM, and issues invalidations exactly as a correct guest driver does. \
        It checks the daemon's shadow (over the control socket) against what the guest meant.
        """,
        version: BuildInfo.versionLine(program: "vtdbridge-sim"),
        subcommands: [Scenario.self, Load.self, VMTest.self, VMBench.self, QEMUTest.self, EduDMA.self,
                      VFIOUserBench.self, VFIOUserStub.self, SocketEcho.self]
    )
}

struct Connection: ParsableArguments {
    @Option(name: .customLong("event-socket"), help: ArgumentHelp("The daemon's event channel.", valueName: "PATH"))
    var eventSocket: String?

    @Option(name: .customLong("control-socket"), help: ArgumentHelp("The daemon's control socket.", valueName: "PATH"))
    var controlSocket: String?

    @Option(name: .long, help: "Daemon instance name: sockets under /run/vtd-bridge/NAME/.")
    var name = "default"

    @Option(name: .customLong("ram"), help: ArgumentHelp("Guest RAM size (K/M/G suffixes).", valueName: "SIZE"))
    var ram = "256M"

    @Option(name: .customLong("attach"), help: ArgumentHelp("Attach a host device first, over the control socket (repeatable).", valueName: "HOST=GUEST"))
    var attach: [String] = []

    @Option(name: .customLong("device"), help: ArgumentHelp("A guest source-id already attached (repeatable).", valueName: "BB:DD.F"))
    var device: [String] = []

    @Flag(name: .long, help: "Print only failures and the summary.")
    var quiet = false

    var eventPath: String { eventSocket ?? "/run/vtd-bridge/\(name)/event.sock" }
    var controlPath: String { controlSocket ?? "/run/vtd-bridge/\(name)/control.sock" }

    func ramBytes() throws -> UInt64 {
        guard let v = CommandLineNumber.parse(ram), v >= 32 << 20, v & 0xfff == 0 else {
            throw ValidationError("--ram \(ram): expected a size of at least 32M, a multiple of 4K")
        }
        return v
    }

    /// Attaches what --attach names and returns every guest source-id to drive.
    func devices(control: ControlClient, transcript: Transcript) throws -> [SourceID] {
        var sids: [SourceID] = []
        for spec in attach {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let sid = SourceID(parts[1]) else {
                throw ValidationError("--attach \(spec): expected HOST=GUEST, e.g. 0000:01:00.0=00:03.0")
            }
            var args: [String: JSONValue] = ["guest": .string(parts[1])]
            if parts[0].hasPrefix("group:"), let n = Int(parts[0].dropFirst(6)) { args["group"] = .int(Int64(n)) } else { args["host"] = .string(parts[0]) }
            let r = try control.require("attach", args)
            transcript.daemon("attached \(parts[0]) as guest \(sid) (\(r["backend"]?.stringValue ?? "?") backend)")
            sids.append(sid)
        }
        for text in device {
            guard let sid = SourceID(text) else { throw ValidationError("--device \(text): expected BB:DD.F") }
            sids.append(sid)
        }
        guard !sids.isEmpty else {
            throw ValidationError("no device to drive: pass --attach HOST=GUEST or --device GUEST")
        }
        return sids
    }
}

struct Scenario: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run scripted scenarios and check the daemon's mappings after each.",
        discussion: """
        Scenarios: \(Scenarios.all.joined(separator: ", ")), or all (the default). Only when named, as they need \
        the vfio backend and edu devices (PCI 1234:11e8): \(Scenarios.realDevice.joined(separator: ", ")) (real \
        DMA through the guest's mappings, with the device fd the daemon returns).
        """)

    @OptionGroup var connection: Connection

    @Argument(help: "Scenarios to run, in order.")
    var names: [String] = []

    func run() throws {
        let transcript = Transcript(quiet: connection.quiet)
        let names = names.isEmpty || names == ["all"] ? Scenarios.all : names
        for n in names where !Scenarios.names.contains(n) {
            throw ValidationError("no scenario \"\(n)\"; scenarios: \(Scenarios.names.joined(separator: ", "))")
        }
        do {
            let guest = try SimulatedGuest(ramSize: try connection.ramBytes(), caps: .make())
            let control = try ControlClient(path: connection.controlPath)
            let sids = try connection.devices(control: control, transcript: transcript)
            let link = try VMMLink(eventPath: connection.eventPath, guest: guest, transcript: transcript)
            try link.handshake()
            let scenarios = Scenarios(guest: guest, link: link, control: control, devices: sids, transcript: transcript)
            for n in names { try scenarios.run(n) }
            print("\nvtdbridge-sim: \(names.count) scenario(s) passed")
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandleStderr.write("vtdbridge-sim: FAILED: \(error)\n")
            throw ExitCode(1)
        }
    }
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream page-selective invalidations and measure the daemon's rate.",
        discussion: "Each invalidation maps or unmaps one 4 KiB page; a batch ends in a wait descriptor and waits for its ack.")

    @OptionGroup var connection: Connection

    @Option(help: "Invalidations to send.")
    var count = 100_000

    @Option(help: "Invalidations per batch (each batch waits for its ack).")
    var batch = 64

    @Option(help: "Distinct pages cycled through.")
    var window = 4096

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        guard count > 0, batch > 0, window > 0 else { throw ValidationError("--count, --batch and --window must be positive") }
        let transcript = Transcript(quiet: true)
        do {
            let guest = try SimulatedGuest(ramSize: try connection.ramBytes(), caps: .make())
            let control = try ControlClient(path: connection.controlPath)
            let sids = try connection.devices(control: control, transcript: transcript)
            let link = try VMMLink(eventPath: connection.eventPath, guest: guest, transcript: transcript)
            try link.handshake()
            var setup: [InvalidationDescriptor] = []
            for (i, sid) in sids.enumerated() { setup += try guest.attach(sid, domain: UInt16(i + 1)) }
            try link.deliver(setup)
            var mapped = [Bool](repeating: false, count: window)
            var pending: [InvalidationDescriptor] = []
            pending.reserveCapacity(batch + 1)
            var maps = 0, unmaps = 0, batches = 0
            let start = ContinuousClock.now
            for i in 0..<count {
                let slot = i % window
                let iova = 0x1_0000_0000 + UInt64(slot) * 0x1000
                if mapped[slot] {
                    pending += try guest.unmap(domain: 1, iova: iova)
                } else {
                    pending += try guest.map(domain: 1, iova: iova, gpa: 0x10_0000 + UInt64(slot % 8192) * 0x1000)
                }
                mapped[slot].toggle()
                if pending.count == batch || i == count - 1 {
                    let r = try link.deliver(pending)
                    maps += Int(r.maps)
                    unmaps += Int(r.unmaps)
                    batches += 1
                    pending.removeAll(keepingCapacity: true)
                }
            }
            let elapsed = start.duration(to: .now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let rate = Double(count) / seconds
            if json {
                print("{\"invalidations\":\(count),\"batch\":\(batch),\"batches\":\(batches),\"seconds\":\(seconds),\"per_second\":\(rate),\"maps\":\(maps),\"unmaps\":\(unmaps)}")
            } else {
                print("vtdbridge-sim load: \(count) invalidations in \(batches) batches of \(batch): \(String(format: "%.3f", seconds)) s, \(Int(rate)) invalidations/s (\(maps) maps, \(unmaps) unmaps)")
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandleStderr.write("vtdbridge-sim: FAILED: \(error)\n")
            throw ExitCode(1)
        }
    }
}
