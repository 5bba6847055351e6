import Foundation
import Glibc
import UnixIO
import VTd

/// Runs the qtest scenarios against real QEMU processes: starts QEMU with
/// its qtest socket connected to us, plays the guest (`QEMUGuest`), and
/// reports one PASS or FAIL line per scenario, then "qemu-test: N passed,
/// N failed". Checks that cannot apply in a mode are printed as skipped and
/// counted apart, never as passed.
final class QEMUTestRunner {
    let template: QEMUCommandLine
    let directory: String
    let witness: QEMUFaultWitness
    let daemon: QEMUDaemonChecks
    let transcript = Transcript(quiet: false)
    let latencies = QTestLatencyLog()
    let listener: UnixListener
    /// The daemon as systemd runs it, for daemon-restart.
    var unit: SystemdUnitHandle?
    private(set) var process: QEMUProcess?
    private(set) var guest: QEMUGuest!
    private var generation = 0
    private(set) var skipped = 0
    /// Set when a scenario failed: the next one starts from a new QEMU, as
    /// the guest's state is unknown.
    private var needsFreshQEMU = false

    init(template: QEMUCommandLine, directory: String, witness: QEMUFaultWitness, daemon: QEMUDaemonChecks) throws {
        self.template = template
        self.directory = directory
        self.witness = witness
        self.daemon = daemon
        listener = try UnixListener.listen(path: template.qtestSocket, mode: 0o600)
    }

    // MARK: scenarios

    /// name, what it shows, body.
    var scenarios: [(String, () throws -> Void)] {
        [("map-dma", mapAndDMA),
         ("unmap", unmapFaults),
         ("remap", remap),
         ("large-page", largePage),
         ("domain-invalidation", domainInvalidation),
         ("translation-off-on", translationOffOn),
         ("reset", platformReset),
         ("psi-cost", invalidationCost),
         ("qemu-restart", qemuRestart)] + (unit == nil ? [] : [("daemon-restart", daemonRestart)])
    }

    func runAll(only: [String]) -> Int {
        var passed = 0, failed = 0
        print("qemu-test: \(template.device), QEMU \(template.binary) (-accel \(template.accelerator.rawValue))")
        print("qemu-test: faults seen by \(witness.name); daemon checks: \(daemon.name)")
        let selected = scenarios.filter { only.isEmpty || only.contains($0.0) }
        do {
            transcript.title("setup")
            try startQEMU()
        } catch {
            print("FAIL setup: \(error)")
            print("qemu-test: 0 passed, \(selected.count) failed")
            return selected.count
        }
        for (name, body) in selected {
            transcript.title(name)
            let start = ContinuousClock.now
            do {
                if needsFreshQEMU || process?.isRunning != true {
                    transcript.line("runner", "starting a new QEMU: the last one failed or is gone")
                    try startQEMU()
                }
                try body()
                passed += 1
                print("PASS \(name) (\(QTestLatencyLog.milliseconds(start.duration(to: .now))))")
            } catch {
                failed += 1
                needsFreshQEMU = true
                print("FAIL \(name) (\(QTestLatencyLog.milliseconds(start.duration(to: .now)))): \(error)")
                if let process { print("--- \(process.condition)") }
            }
        }
        process?.stop()
        listener.close()
        transcript.title("timings")
        for line in latencies.lines { transcript.line("timing", line) }
        let skips = skipped > 0 ? " (\(skipped) check(s) skipped: \(daemon.name))" : ""
        print("qemu-test: \(passed) passed, \(failed) failed\(skips)")
        return failed
    }

    // MARK: QEMU

    /// Kills any QEMU of ours, starts a new one and brings the guest up.
    func startQEMU() throws {
        process?.kill()
        generation += 1
        let log = "\(directory)/qemu-\(generation).log"
        transcript.line("qemu", template.shellText)
        let p = try QEMUProcess(template, listener: listener, logPath: log)
        process = p
        let tick: () throws -> Void
        if template.device.isEmulated, try p.qtest.controlsClock() {
            // The emulated edu finishes a DMA from a virtual-time timer; under
            // -accel qtest only the client moves that clock.
            tick = { try p.qtest.clockStep() }
        } else {
            tick = { usleep(2000) }
        }
        transcript.line("qemu", "pid \(p.pid) connected to \(template.qtestSocket); log \(log)")
        guest = QEMUGuest(qtest: p.qtest, layout: QEMUGuest.Layout(ramSize: template.ramSize), latencies: latencies, tick: tick)
        try guest.bringUp(transcript)
        needsFreshQEMU = false
    }

    func killQEMU() -> Int32? {
        let status = process?.kill()
        process = nil
        return status
    }

    // MARK: reporting

    func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw SimError(message()) }
    }

    func passed(_ text: String) { transcript.check(text) }

    func report(_ outcome: QEMUCheckOutcome, _ what: String) {
        switch outcome {
        case .passed(let text): transcript.check("\(what): \(text)")
        case .skipped(let why):
            skipped += 1
            transcript.line("skip", "\(what): \(why)")
        }
    }

    /// After a change to the guest's tables: what the daemon must now hold.
    func daemonCheck(after what: String) throws {
        report(try daemon.guestChanged(guest.view, after: what), "daemon after \(what)")
    }

    /// Checks `count` bytes at `gpa` equal `expected`, naming what they are.
    func expectBytes(at gpa: UInt64, _ expected: [UInt8], _ what: String) throws {
        let found = try guest.read(gpa, count: expected.count)
        guard found == expected else {
            let at = found.indices.first { found[$0] != expected[$0] } ?? 0
            throw SimError("\(what): GPA \(hex(gpa)) differs from what was expected at byte \(at) (found \(found[at..<min(at + 8, found.count)].map { hex($0) }), expected \(expected[at..<min(at + 8, expected.count)].map { hex($0) }))")
        }
    }
}
