import ArgumentParser
import Bridge
import Foundation
import Glibc
import Histogram
import VFIO
import VTdBridgeClient
import Wire

/// The vfio-user figures of `make bench`, inside the test VM (issue 11):
///
/// 1. DMA_MAP → reply and DMA_UNMAP → reply through vtdbridged's vfio-user
///    server on a real edu, beside the same-run floor: a plain Unix-socket
///    round trip between two processes, plus one raw VFIO_IOMMU_MAP_DMA
///    (UNMAP_DMA) on a second edu's container with no daemon.
/// 2. The guest-visible cost of one page-selective invalidation (the
///    qtest-timed queue-tail write, which QEMU holds until its vfio-user
///    server has replied) with QEMU 11.1 and vtdbridged, beside the same
///    with `vfio-user-stub`, a server that answers at once.
///
/// Prints BENCH-ROW lines (figure|n|value|reference|goal) that vtdbridge-bench
/// puts into docs/BENCHMARKS.md's table. Nothing here asserts a time; it
/// does check that every timed request really went through the server it
/// names (the servers' own counters), so that a figure cannot come from
/// refused or lost messages.
struct VFIOUserBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfio-user-bench",
        abstract: "Measure the vfio-user path: DMA_MAP latency against its floor, and a guest invalidation's cost (inside the test VM).")

    @Option(help: ArgumentHelp("The daemon binary.", valueName: "PATH"))
    var daemon = "/bin/vtdbridged"

    @Option(help: ArgumentHelp("The QEMU binary, 10.1 or later (searched in PATH without a slash).", valueName: "PATH"))
    var qemu = "qemu-system-x86_64"

    @Option(help: ArgumentHelp("Scratch directory (sockets, logs, the daemon's state).", valueName: "PATH"))
    var directory = "/run/vtdbench-vu"

    @Option(help: "Timed DMA_MAP/DMA_UNMAP rounds (each also times one socket round trip and one raw MAP_DMA/UNMAP_DMA).")
    var rounds = 4000

    @Option(help: "Untimed rounds before them (the daemon maps the memory file on the first).")
    var warmup = 100

    @Option(help: "Timed guest map+unmap rounds per server (two page-selective invalidations each).")
    var invalidations = 300

    func validate() throws {
        guard rounds > 0, warmup >= 0, invalidations > 0 else {
            throw ValidationError("--rounds and --invalidations must be positive, --warmup not negative")
        }
    }

    func run() throws {
        let edus = VMTestRunner.eduDevices()
        guard edus.count >= 2 else { throw SimError("vfio-user-bench needs two edu devices bound to vfio-pci, found \(edus)") }
        guard let qemuBinary = QEMUCommandLine.resolve(qemu) else {
            throw SimError("vfio-user-bench needs QEMU 10.1 or later: no executable \(qemu) (boot the VM with scripts/vm/run --qemu)")
        }
        guard let address = PCIAddress(edus[0]) else { throw SimError("\(edus[0]) is not a PCI address") }
        let group = try Group.groupNumber(of: address)
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw SimError("creating \(directory): \(String(cString: strerror(errno)))")
        }
        let socket = directory + "/edu0.sock"
        let supervisor = DaemonSupervisor(binary: daemon, name: "vubench", directory: directory + "/daemon")
        try supervisor.start(extra: ["--device", "group:\(group)=00:03.0,vfio-user=\(socket)", "--log-level", "warning"])
        defer { supervisor.stop() }
        let control = try ControlClient(path: supervisor.controlSocket)
        // The control socket accepts before the daemon's loop runs; `status`
        // is answered only after its configured devices were attached (and
        // their vfio-user sockets made). Nothing probes the vfio-user socket
        // itself: a connection there is a client.
        let status = try control.require("status")
        guard access(socket, F_OK) == 0 else {
            throw SimError("vtdbridged does not serve \(socket); its status: \(status.serialized)\n\(supervisor.log)")
        }

        let dma = try measureDMA(socket: socket, rawDevice: edus[1], control: control)
        let cost = try measureInvalidations(qemu: qemuBinary, daemonSocket: socket, control: control)

        func row(_ figure: String, _ n: Int, _ value: String, _ reference: String, _ goal: String = "") {
            print("BENCH-ROW \(figure)|\(n)|\(value)|\(reference)|\(goal)")
        }
        // issue 14: DMA_MAP → reply p50 ≤ 1.5× and p99 ≤ 3× the floor's, each
        // floor sample the plain round trip plus the raw call of its round.
        row("VM: vfio-user DMA_MAP 4K → reply, through the daemon (real edu)", dma.map.count, dma.map.text,
            dma.mapFloor.reference, dma.mapFloor.goal)
        row("VM: vfio-user DMA_UNMAP 4K → reply, through the daemon (real edu)", dma.unmap.count, dma.unmap.text,
            dma.unmapFloor.reference)
        row("VM: Unix-socket round trip between two processes, 48 B → 16 B", dma.roundTrip.count, dma.roundTrip.text,
            "the same carrying one fd (as each DMA_MAP does): \(dma.roundTripWithFD.text)")
        row("VM: raw VFIO_IOMMU_MAP_DMA 4K, no daemon", dma.rawMap.count, dma.rawMap.text,
            "UNMAP_DMA: \(dma.rawUnmap.text)")
        row("VM: guest page-selective invalidation (IQT write), QEMU 11.1 + vtdbridged, real edu", cost.daemon.count, cost.daemon.text,
            "QEMU with a server that answers at once: \(cost.stub.text); daemon p50 / stub p50: \(ratio(cost.daemon.p50, cost.stub.p50))")
        row("VM: guest page-selective invalidation (IQT write), QEMU 11.1 + stub server", cost.stub.count, cost.stub.text,
            "QEMU's own cost: no daemon, no kernel call")
    }

    func us(_ ns: UInt64) -> String { LatencyFigure.us(ns) }
    func ratio(_ a: UInt64, _ b: UInt64) -> String { b == 0 ? "n/a" : String(format: "%.2f×", Double(a) / Double(b)) }
}

/// A latency distribution, in nanoseconds.
struct LatencyFigure {
    var count: Int
    var p50: UInt64
    var p99: UInt64
    var max: UInt64

    init(_ h: Histogram<UInt64>) {
        count = Int(h.totalCount)
        p50 = h.valueAtPercentile(50)
        p99 = h.valueAtPercentile(99)
        max = h.max
    }

    init(_ s: QTestLatencyLog.Summary) {
        count = s.count
        p50 = UInt64(s.p50.nanosecondCount)
        p99 = UInt64(s.p99.nanosecondCount)
        max = UInt64(s.max.nanosecondCount)
    }

    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }

    var text: String { "p50 \(Self.us(p50)) µs, p99 \(Self.us(p99)) µs, max \(Self.us(max)) µs" }
    static func us(_ ns: UInt64) -> String { ns >= 100_000 ? String(Int((Double(ns) / 1000).rounded())) : String(format: "%.1f", Double(ns) / 1000) }
}
