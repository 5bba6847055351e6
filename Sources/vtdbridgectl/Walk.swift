import ArgumentParser
import Bridge
import Logging
import Posix
import VTd
import VTdBridgeClient

struct Walk: ParsableCommand {
    // The examples are kept under 80 columns: ArgumentParser rewraps longer
    // lines of a discussion, and a wrapped command line cannot be pasted.
    static let configuration = CommandConfiguration(
        abstract: "Print the translation the daemon would establish for one device.",
        discussion: """
        Reads guest RAM (an image or a live shared-memory file) read-only, walks the \
        guest's VT-d root, context and second-level tables for the device with the \
        daemon's own walker, and prints the mappings (IOVA, guest-physical address, \
        size, read/write) and the faults, as mappings prints the daemon's. Needs no \
        daemon.

        Sizes take K/M/G suffixes; addresses are hex (0x...) or decimal. Exit status: \
        0 when the walk ran (faults in the tables are part of the output), 1 when guest \
        memory could not be read, 64 on a bad command line.

        Examples:

          vtdbridgectl walk --memory /dev/shm/vm0-ram \\
              --root-table 0x7f000 --device 00:03.0

          vtdbridgectl walk --region 0:2G@ram.img \\
              --region 0x100000000:2G@ram.img+0x80000000 \\
              --root-table 0x7f000 --device 00:03.0 --json
        """
    )

    @Option(name: .customLong("memory"), help: ArgumentHelp("A whole file as guest RAM at GPA (default 0); repeatable.", valueName: "PATH[@GPA]"))
    var memory: [String] = []

    @Option(name: .customLong("region"), help: ArgumentHelp("Part of a file as guest RAM; repeatable.", valueName: "GPA:SIZE@PATH[+OFFSET]"))
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

    /// What the command line says, checked before anything is read; a
    /// mistake here is a usage error (exit 64, with walk's usage).
    struct Request {
        var memory: [RegionArgument.Memory]
        var regions: [GuestRAMRegionSpec]
        var root: UInt64
        var device: SourceID
        var caps: IOMMUCapabilities
    }

    func request() throws -> Request {
        let memory: [RegionArgument.Memory]
        let regions: [GuestRAMRegionSpec]
        do {
            memory = try self.memory.map { s throws(RegionArgument.ParseError) in try RegionArgument.memory(s) }
            regions = try region.map { s throws(RegionArgument.ParseError) in try RegionArgument.region(s) }
        } catch {
            throw ValidationError(error.description)
        }
        guard !memory.isEmpty || !regions.isEmpty else {
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
        return Request(memory: memory, regions: regions, root: root, device: sid, caps: caps)
    }

    func validate() throws {
        _ = try request()
    }

    func run() throws {
        let request = try request()
        var logger = Logger(label: "vtdbridgectl")
        logger.logLevel = .error
        let report: TranslationReport
        do {
            let specs = try request.memory.map { m throws(RegionArgument.ParseError) in try m.region() } + request.regions
            report = try Inspector.walk(.init(regions: specs, rootTable: request.root, device: request.device, caps: request.caps), logger: logger)
        } catch {
            // Guest memory that cannot be read is not a usage error (exit 1,
            // README): the command line was right, the file is not.
            FileHandleStderr.write("vtdbridgectl walk: \(error)\n")
            throw ExitCode(1)
        }
        print(json ? report.json.serialized : TranslationText.render(report.json, device: device), terminator: json ? "\n" : "")
    }
}
