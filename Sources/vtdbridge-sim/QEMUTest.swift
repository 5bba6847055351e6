import ArgumentParser
import Glibc
import VTdBridgeClient

/// `vtdbridge-sim qemu-test`: play the guest for a real QEMU over qtest.
struct QEMUTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu-test",
        abstract: "Drive a real QEMU over qtest: VT-d tables, invalidations and edu DMA checks.",
        discussion: """
        Starts QEMU (q35, memfd guest RAM, intel-iommu in caching mode with aw-bits=39, an edu at \
        00:03.0) with its qtest socket connected to this process, and plays the guest: PCI \
        enumeration, the DMAR unit, 3-level tables, queued invalidation, and edu DMA whose bytes are \
        checked in guest RAM at the GPAs the tables name.

        --device edu uses QEMU's emulated edu behind QEMU's emulated VT-d (no daemon; faults are \
        read from the DMAR unit's fault recording registers). --device vfio-user:SOCKET uses \
        vfio-user-pci with its server on SOCKET (vtdbridged proxying a real edu; QEMU 10.1+); faults \
        are read from the kernel log.

        Debian's QEMU 7.2 packages ship no qtest accelerator: use --accel tcg there (a vCPU that \
        halts at its reset vector, and virtual time that runs by itself).

        Scenarios: \(QEMUTest.scenarioNames.joined(separator: ", ")).
        """)

    static let scenarioNames = ["map-dma", "unmap", "remap", "large-page", "domain-invalidation",
                                "translation-off-on", "reset", "psi-cost", "qemu-restart", "daemon-restart"]

    @Option(help: ArgumentHelp("The QEMU binary (searched in PATH without a slash).", valueName: "PATH"))
    var qemu = "qemu-system-x86_64"

    @Option(help: ArgumentHelp("edu, or vfio-user:SOCKET[,PROP=VALUE...] (extra vfio-user-pci properties).", valueName: "KIND"))
    var device = "edu"

    @Option(help: ArgumentHelp("qtest (-accel qtest) or tcg.", valueName: "ACCEL"))
    var accel = "qtest"

    @Option(help: ArgumentHelp("Directory for the qtest socket, QEMU's logs and the halting firmware.", valueName: "PATH"))
    var directory = "/tmp/vtdbridge-qemu-test"

    @Option(name: .customLong("qtest-socket"), help: ArgumentHelp("The qtest socket (default: DIRECTORY/qtest.sock).", valueName: "PATH"))
    var qtestSocket: String?

    @Option(help: ArgumentHelp("Guest RAM (at least 128M).", valueName: "SIZE"))
    var ram = "128M"

    @Option(name: .customLong("qemu-arg"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("An extra QEMU argument, appended as given (repeatable; e.g. --qemu-arg=-trace --qemu-arg='vtd_*').", valueName: "ARG"))
    var qemuArgs: [String] = []

    @Option(name: .customLong("control-socket"),
            help: ArgumentHelp("vfio-user mode: the daemon's control socket, for the daemon checks (without it they are reported as skipped).", valueName: "PATH"))
    var controlSocket: String?

    @Option(name: .customLong("daemon-device"), help: ArgumentHelp("vfio-user mode: the device's guest source-id in the daemon.", valueName: "BB:DD.F"))
    var daemonDevice = "00:03.0"

    @Option(help: ArgumentHelp("vfio-user mode: the daemon is systemd's vtdbridged@NAME, which daemon-restart restarts through the root helper at --unit-control (scripts/vm/unit-helper.sh).", valueName: "NAME"))
    var unit: String?

    @Option(name: .customLong("unit-control"), help: ArgumentHelp("Directory of the root helper's FIFOs.", valueName: "PATH"))
    var unitControl = "/run/vtdtest-unit"

    @Argument(help: "Scenarios to run (default: all; daemon-restart only with --unit).")
    var only: [String] = []

    func validate() throws {
        guard QEMUDeviceKind(argument: device) != nil else {
            throw ValidationError("--device \(device): expected edu or vfio-user:/absolute/socket[,PROP=VALUE...]")
        }
        guard QEMUCommandLine.Accelerator(rawValue: accel) != nil else { throw ValidationError("--accel \(accel): expected qtest or tcg") }
        guard let size = CommandLineNumber.parse(ram), size >= QEMUGuest.Layout.minimumRAM, size & 0xf_ffff == 0 else {
            throw ValidationError("--ram \(ram): expected a whole number of MiB, at least 128M")
        }
        for name in only where !Self.scenarioNames.contains(name) {
            throw ValidationError("no scenario \"\(name)\"; scenarios: \(Self.scenarioNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        guard let binary = QEMUCommandLine.resolve(qemu) else { throw ValidationError("--qemu \(qemu): no such executable") }
        let kind = QEMUDeviceKind(argument: device)!
        let accelerator = QEMUCommandLine.Accelerator(rawValue: accel)!
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw ValidationError("--directory \(directory): \(String(cString: strerror(errno)))")
        }
        var firmware: String?
        if accelerator == .tcg {
            firmware = directory + "/halt.bin"
            try QEMUCommandLine.writeHaltingFirmware(at: firmware!)
        }
        let commandLine = QEMUCommandLine(binary: binary, accelerator: accelerator, ramSize: CommandLineNumber.parse(ram)!,
                                          device: kind, qtestSocket: qtestSocket ?? directory + "/qtest.sock",
                                          firmware: firmware, extra: qemuArgs)
        let witness: QEMUFaultWitness = kind.isEmulated ? EmulatedDMARFaults() : KernelLogDMARFaults()
        let daemon: QEMUDaemonChecks
        if kind.isEmulated {
            daemon = NoDaemonChecks(reason: "daemon checks are not part of the edu mode: no daemon is involved")
        } else if let controlSocket {
            daemon = VFIOUserDaemonChecks(controlSocket: controlSocket, device: daemonDevice)
        } else {
            daemon = NoDaemonChecks(reason: "no --control-socket was given")
        }
        let runner: QEMUTestRunner
        do {
            runner = try QEMUTestRunner(template: commandLine, directory: directory, witness: witness, daemon: daemon)
        } catch {
            throw ValidationError("qtest socket \(commandLine.qtestSocket): \(error)")
        }
        runner.unit = unit.map { SystemdUnitHandle(name: $0, controlDirectory: unitControl) }
        if runner.runAll(only: only) > 0 { throw ExitCode(1) }
    }
}
