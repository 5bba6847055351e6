import Foundation
import Glibc
import UnixIO
import VTdBridgeClient

/// Part 2 of `vfio-user-bench`: what one page-selective invalidation costs
/// the guest with QEMU 11.1's vfio-user-pci, through vtdbridged and through
/// a server that answers at once.
extension VFIOUserBench {
    struct InvalidationFigures {
        var daemon: LatencyFigure
        var stub: LatencyFigure
    }

    /// A QEMU under qtest with its device on a vfio-user socket, and the
    /// qtest guest brought up to a translating domain (QEMUGuest).
    final class BenchGuest {
        let name: String
        let listener: UnixListener
        let process: QEMUProcess
        let guest: QEMUGuest
        /// The IQT write of each timed map and unmap.
        let timed = QTestLatencyLog()

        init(name: String, qemu: String, vfioUserSocket: String, directory: String) throws {
            self.name = name
            let qtestSocket = "\(directory)/qtest-\(name).sock"
            listener = try UnixListener.listen(path: qtestSocket, mode: 0o600)
            let commandLine = QEMUCommandLine(binary: qemu, accelerator: .qtest, ramSize: QEMUGuest.Layout.minimumRAM,
                                              device: .vfioUser(socket: vfioUserSocket, properties: []), qtestSocket: qtestSocket)
            do {
                process = try QEMUProcess(commandLine, listener: listener, logPath: "\(directory)/qemu-\(name).log")
            } catch {
                listener.close()
                throw error
            }
            // The guest's own log of every register write (bring-up included)
            // is not the figure; `timed` is.
            guest = QEMUGuest(qtest: process.qtest, layout: QEMUGuest.Layout(ramSize: commandLine.ramSize),
                              latencies: QTestLatencyLog(), tick: { usleep(2000) })
            try guest.bringUp(Transcript(quiet: true))
        }

        /// Maps one page and unmaps it, each with its page-selective
        /// invalidation; records both IQT writes when `record` is set.
        func round(record: Bool) throws {
            let iova = QEMUTestRunner.spreadIOVA + 0x10_0000
            let mapped = try guest.map(iova: iova, gpa: guest.layout.dataPage(40))
            let unmapped = try guest.unmap(iova: iova)
            if record {
                timed.record(Self.label, mapped)
                timed.record(Self.label, unmapped)
            }
        }

        static let label = "page-selective IOTLB invalidation (IQT write)"

        var figure: LatencyFigure { LatencyFigure(timed.summaries.first { $0.what == Self.label }!) }

        func stop() {
            process.stop()
            listener.close()
        }
    }

    /// Two QEMUs side by side, one on the stub, one on the daemon, their
    /// rounds interleaved so that both see the same VM weather. Checks that
    /// each server counted the DMA_MAPs its QEMU was made to send.
    func measureInvalidations(qemu: String, daemonSocket: String, control: ControlClient) throws -> InvalidationFigures {
        let stubSocket = directory + "/stub.sock"
        let stub = try ChildProcess([ChildProcess.selfExecutable, "vfio-user-stub", "--socket", stubSocket],
                                    logPath: directory + "/stub.log")
        defer { stub.stop() }
        try stub.waitForFile(stubSocket)

        let onStub = try BenchGuest(name: "stub", qemu: qemu, vfioUserSocket: stubSocket, directory: directory)
        defer { onStub.stop() }
        let onDaemon = try BenchGuest(name: "daemon", qemu: qemu, vfioUserSocket: daemonSocket, directory: directory)
        defer { onDaemon.stop() }

        let warmupRounds = 10
        for _ in 0..<warmupRounds {
            try onStub.round(record: false)
            try onDaemon.round(record: false)
        }
        let mapsBefore = try vfioUserCounter(control, "dma-maps")
        for _ in 0..<invalidations {
            try onStub.round(record: true)
            try onDaemon.round(record: true)
        }
        let daemonMaps = try vfioUserCounter(control, "dma-maps") - mapsBefore
        guard daemonMaps >= invalidations else {
            throw SimError("the daemon counted \(daemonMaps) DMA_MAPs for \(invalidations) guest maps")
        }
        let figures = InvalidationFigures(daemon: onDaemon.figure, stub: onStub.figure)

        // The stub logs its counters when its client goes.
        onStub.stop()
        let deadline = ContinuousClock.now + .seconds(10)
        var line: Substring?
        while line == nil && ContinuousClock.now < deadline {
            line = stub.log.split(separator: "\n").last { $0.contains("dma-maps=") }
            if line == nil { usleep(20_000) }
        }
        guard let line, let maps = line.split(separator: " ").first(where: { $0.hasPrefix("dma-maps=") }).flatMap({ Int($0.dropFirst(9)) }),
              maps >= warmupRounds + invalidations else {
            throw SimError("the stub did not report the \(warmupRounds + invalidations) DMA_MAPs or more its QEMU sent:\n\(stub.log)")
        }
        return figures
    }
}
