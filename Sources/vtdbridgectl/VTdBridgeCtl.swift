import ArgumentParser
import Bridge
import Glibc
import JSON
import Logging
import Posix
import VTd
import VTdBridgeClient

@main
struct VTdBridgeCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtdbridgectl",
        abstract: "Inspect and control vtd-bridge, the VT-d to VFIO bridge daemon.",
        discussion: "Every command but walk talks to a running vtdbridged over its control socket (docs/PROTOCOL.md §2). Exit status: 0 done, 1 the daemon refused (code and message on stderr), 2 the daemon could not be reached.",
        subcommands: [Status.self, Mappings.self, Attach.self, Detach.self, Replay.self, Metrics.self, LogLevel.self, Shutdown.self, Walk.self]
    )
}

struct Walk: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the translation the daemon would establish for one device.",
        discussion: """
        Reads guest RAM (an image or a live shared-memory file) read-only, walks the guest's \
        VT-d root, context and second-level tables for DEVICE with the daemon's own walker, \
        and prints the mappings (IOVA, GPA, size, read/write) and the faults.

        Examples:
          vtdbridgectl walk --memory /dev/shm/vm0-ram --root-table 0x7f000 --device 00:03.0
          vtdbridgectl walk --region 0:2G@ram.img --region 0x100000000:2G@ram.img+0x80000000 \\
                            --root-table 0x7f000 --device 00:03.0 --json
        """
    )

    @Option(name: .customLong("memory"), help: ArgumentHelp("A whole file as guest RAM at GPA (default 0).", valueName: "PATH[@GPA]"))
    var memory: [String] = []

    @Option(name: .customLong("region"), help: ArgumentHelp("Part of a file as guest RAM.", valueName: "GPA:SIZE@PATH[+OFFSET]"))
    var region: [String] = []

    @Option(name: .customLong("root-table"), help: ArgumentHelp("Guest-physical address of the root table (RTADDR).", valueName: "ADDR"))
    var rootTable: String

    @Option(name: .customLong("device"), help: ArgumentHelp("The device's source-id.", valueName: "BB:DD.F"))
    var device: String

    @Option(name: .customLong("cap"), help: ArgumentHelp("The guest IOMMU's CAP_REG (default: 48-bit, 3/4-level, 2M/1G pages).", valueName: "HEX"))
    var cap: String?

    @Option(name: .customLong("ecap"), help: ArgumentHelp("The guest IOMMU's ECAP_REG (default: QI and PT).", valueName: "HEX"))
    var ecap: String?

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    func run() throws {
        var specs: [GuestRAMRegionSpec] = []
        do {
            specs += try memory.map { s throws(RegionArgument.ParseError) in try RegionArgument.memory(s) }
            specs += try region.map { s throws(RegionArgument.ParseError) in try RegionArgument.region(s) }
        } catch {
            throw ValidationError(error.description)
        }
        guard !specs.isEmpty else {
            throw ValidationError("no guest RAM given: pass --memory PATH[@GPA] or --region GPA:SIZE@PATH[+OFFSET]")
        }
        guard let root = CommandLineNumber.parse(rootTable) else {
            throw ValidationError("--root-table \(rootTable): not an address (e.g. 0x7f000)")
        }
        guard let sid = SourceID(device) else {
            throw ValidationError("--device \(device): not a source-id; expected BB:DD.F in hex, e.g. 00:03.0")
        }
        var caps = IOMMUCapabilities.make()
        if let cap {
            guard let v = CommandLineNumber.parse(cap) else { throw ValidationError("--cap \(cap): not a number") }
            caps.cap = v
        }
        if let ecap {
            guard let v = CommandLineNumber.parse(ecap) else { throw ValidationError("--ecap \(ecap): not a number") }
            caps.ecap = v
        }
        var logger = Logger(label: "vtdbridgectl")
        logger.logLevel = .error
        let report: TranslationReport
        do {
            report = try Inspector.walk(.init(regions: specs, rootTable: root, device: sid, caps: caps), logger: logger)
        } catch {
            FileHandleStderr.write("vtdbridgectl walk: \(error)\n")
            throw ExitCode(1)
        }
        print(json ? report.json.serialized : report.text, terminator: json ? "\n" : "")
    }
}
