import ArgumentParser
import Bridge
import CPosix
import Foundation
import Glibc
import VFIO
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

/// The real-device scenarios, run inside the test VM: vtdbridged on the vfio
/// backend, real edu devices behind vfio-pci, and this process as the VMM
/// and its guest. Each scenario prints PASS or FAIL; the last line is
/// "vmtest: N passed, N failed".
struct VMTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the real-device scenarios (inside the test VM).",
        discussion: "Needs at least two edu devices (PCI 1234:11e8) bound to vfio-pci; a third is used for the memory-lock scenario.")

    @Option(help: ArgumentHelp("The daemon binary.", valueName: "PATH"))
    var daemon = "/bin/vtdbridged"

    @Option(help: ArgumentHelp("Working directory for sockets, state and logs.", valueName: "PATH"))
    var directory = "/run/vtdtest"

    @Flag(name: .customLong("leave-for-walk"), help: """
        At the end, leave the daemon's mappings in place and print what the host must find in the VM kernel's own VT-d page tables (WALK-RTADDR, WALK-CHECK lines); see scripts/vm/check-linux-tables.
        """)
    var leaveForWalk = false

    @Option(name: .customLong("soak-seed"), help: ArgumentHelp("Seed of the kill-soak scenario (default: random, printed).", valueName: "N"))
    var soakSeed: UInt64?

    @Option(name: .customLong("soak-kills"), help: ArgumentHelp("SIGKILLs in the kill-soak scenario.", valueName: "N"))
    var soakKills = 20

    @Option(help: ArgumentHelp("Test the daemon systemd runs as vtdbridged@NAME instead of starting one (runs two-devices-two-domains and unit-restarts; needs --unit-control).", valueName: "NAME"))
    var unit: String?

    @Option(name: .customLong("unit-control"), help: ArgumentHelp("Directory of the root helper's request and reply FIFOs (scripts/vm/systemd-restarts.sh).", valueName: "PATH"))
    var unitControl = "/run/vtdtest-unit"

    @Option(name: .customLong("unit-restarts"), help: ArgumentHelp("systemctl restarts in the unit-restarts scenario (its SIGKILLs: --soak-kills).", valueName: "N"))
    var unitRestarts = 20

    @Option(name: .customLong("in-flight-kills"), help: ArgumentHelp("SIGKILLs of the unit's process while a large batch is in flight, besides --soak-kills.", valueName: "N"))
    var inFlightKills = 5

    @Argument(help: "Scenarios to run (default: all).")
    var only: [String] = []

    func validate() throws {
        guard soakKills > 0 else { throw ValidationError("--soak-kills must be positive") }
    }

    func run() throws {
        let runner = try VMTestRunner(daemonBinary: daemon, directory: directory)
        runner.leaveForWalk = leaveForWalk
        runner.soakSeed = soakSeed ?? UInt64.random(in: 1...UInt64(Int64.max))
        runner.soakKills = soakKills
        runner.unit = unit.map { SystemdUnitHandle(name: $0, controlDirectory: unitControl) }
        runner.unitRestartCount = unitRestarts
        runner.unitInFlightKills = inFlightKills
        let failed = runner.runAll(only: only)
        if failed > 0 { throw ExitCode(1) }
    }
}

final class VMTestRunner {
    let supervisor: DaemonSupervisor
    let eduAddresses: [String]
    let guest: SimulatedGuest
    var link: VMMLink!
    var control: ControlClient!
    var edus: [SourceID: EduDevice] = [:]
    let transcript = Transcript(quiet: false)
    let devices = [SourceID("00:03.0")!, SourceID("00:04.0")!]
    let directory: String
    let daemonBinary: String
    var leaveForWalk = false
    var soakSeed: UInt64 = 1
    var soakKills = 20
    /// The daemon as systemd runs it, when testing the unit (--unit).
    var unit: SystemdUnitHandle?
    var unitRestartCount = 20
    var unitInFlightKills = 5

    init(daemonBinary: String, directory: String) throws {
        self.directory = directory
        self.daemonBinary = daemonBinary
        eduAddresses = Self.eduDevices()
        guard eduAddresses.count >= 2 else {
            throw SimError("need at least two edu devices bound to vfio-pci, found \(eduAddresses.count): \(eduAddresses)")
        }
        supervisor = DaemonSupervisor(binary: daemonBinary, name: "vmtest", directory: directory)
        guest = try SimulatedGuest(ramSize: 64 << 20, tableArea: 8 << 20, caps: .make())
    }

    /// edu devices bound to vfio-pci, by PCI address.
    static func eduDevices() -> [String] {
        let root = "/sys/bus/pci/devices"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.sorted().filter { name in
            let vendor = (try? String(contentsOfFile: "\(root)/\(name)/vendor", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            let device = (try? String(contentsOfFile: "\(root)/\(name)/device", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            let driver = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/\(name)/driver")).map { ($0 as NSString).lastPathComponent }
            return vendor == "0x1234" && device == "0x11e8" && driver == "vfio-pci"
        }
    }

    // MARK: running

    func runAll(only: [String]) -> Int {
        let scenarios: [(String, () throws -> Void)] = unit != nil ? [
            ("two-devices-two-domains", twoDevices),
            ("unit-restarts", unitRestarts),
        ] : [
            ("two-devices-two-domains", twoDevices),
            ("unmap", unmapStopsDMA),
            ("isolation", isolation),
            ("replay", replay),
            ("large-pages", largePages),
            ("context-removal-and-reset", contextRemovalAndReset),
            ("restart", restart),
            ("kill-soak", killSoak),
            ("memlock", memlock),
        ]
        var passed = 0, failed = 0
        do {
            try setUp()
        } catch {
            print("FAIL setup: \(error)")
            print("--- daemon log ---\n\(supervisor.log)")
            print("vmtest: 0 passed, \(scenarios.count) failed")
            return scenarios.count
        }
        for (name, body) in scenarios where only.isEmpty || only.contains(name) {
            transcript.title(name)
            let start = ContinuousClock.now
            do {
                try body()
                passed += 1
                print("PASS \(name) (\(QTestLatencyLog.milliseconds(start.duration(to: .now))))")
            } catch {
                failed += 1
                print("FAIL \(name): \(error)")
                print("--- daemon log (last 30 lines) ---\n\(supervisor.log.split(separator: "\n").suffix(30).joined(separator: "\n"))")
            }
        }
        if leaveForWalk {
            do {
                try printWalkChecks()
            } catch {
                print("FAIL leave-for-walk: \(error)")
                failed += 1
            }
        } else if unit == nil {
            // A unit is stopped by its root helper, which checks the stop.
            supervisor.stop()
        }
        print("vmtest: \(passed) passed, \(failed) failed")
        return failed
    }

    func setUp() throws {
        transcript.title("setup")
        transcript.line("vm", "edu devices bound to vfio-pci: \(eduAddresses.joined(separator: ", "))")
        if let unit {
            transcript.line("vm", "vtdbridged@\(unit.name), as systemd runs it")
            try unit.waitUntilServing()
        } else {
            try supervisor.start()
        }
        control = try ControlClient(path: unit?.controlSocket ?? supervisor.controlSocket)
        try attachDevices()
        link = try VMMLink(eventPath: unit?.eventSocket ?? supervisor.eventSocket, guest: guest, transcript: transcript)
        try link.handshake()
        var batch: [InvalidationDescriptor] = []
        for (i, sid) in devices.enumerated() { batch += try guest.attach(sid, domain: UInt16(i + 1)) }
        try deliver(batch, "context entries for both devices")
    }

    /// Attaches (or re-attaches) the two edu devices and takes their fds.
    func attachDevices() throws {
        edus.removeAll()
        for (i, sid) in devices.enumerated() {
            let (result, fd) = try control.call("attach", ["host": .string(eduAddresses[i]), "guest": .string(sid.description), "return-fd": true])
            let value = try result.get()
            guard let fd else { throw SimError("attach \(eduAddresses[i]) returned no device fd: \(value.serialized)") }
            edus[sid] = try EduDevice(adopting: fd, address: eduAddresses[i])
            transcript.daemon("attached \(eduAddresses[i]) (group \(value["group"]?.intValue ?? -1)) as guest \(sid); device fd received")
        }
    }

    /// The VM kernel's intel-iommu driver wrote VT-d tables for each VFIO
    /// container the daemon filled. Those tables are in this VM's RAM, which
    /// the host can read after the run: print where they are and what they
    /// must translate, and mark each mapped guest page so the host can tell
    /// the right page from any other. The daemon keeps running (power-off
    /// comes next), so no unmap clears the tables first.
    func printWalkChecks() throws {
        // DMAR unit 0's registers (base 0xfed90000, as dmesg prints it): CAP,
        // ECAP and RTADDR. Reading them needs iomem=relaxed on the kernel
        // command line, since the intel-iommu driver has claimed the range.
        func register(_ offset: UInt64) throws -> UInt64 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/busybox")
            p.arguments = ["devmem", "0x" + String(0xfed9_0000 + offset, radix: 16), "64"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            p.waitUntilExit()
            guard text.hasPrefix("0x"), let value = UInt64(text.dropFirst(2), radix: 16) else {
                throw SimError("devmem of DMAR register 0x\(String(offset, radix: 16)) printed \"\(text)\" (is iomem=relaxed set?)")
            }
            return value
        }
        let rtaddr = try register(0x20)
        print("WALK-CAPS cap=0x\(String(try register(0x08), radix: 16)) ecap=0x\(String(try register(0x10), radix: 16))")
        print("WALK-RTADDR 0x\(String(rtaddr & ~0xfff, radix: 16))")
        for (i, sid) in devices.enumerated() {
            // The edu device as the VM kernel sees it: its PCI address is its source-id.
            let host = String(eduAddresses[i].dropFirst(5))
            for m in try mappings(sid) {
                guard let iova = hexValue(m["iova"]), let l2gpa = hexValue(m["gpa"]), let size = hexValue(m["size"]) else { continue }
                var marker = Array("VTDBWALK".utf8)
                withUnsafeBytes(of: l2gpa.littleEndian) { marker += $0 }
                guest.memory.write(gpa: l2gpa, bytes: marker)
                let perm = permissionValue(m) ?? []
                print("WALK-CHECK device=\(host) iova=0x\(String(iova, radix: 16)) size=0x\(String(size, radix: 16)) perm=\(perm) marker=\(marker.map { String(format: "%02x", $0) }.joined())")
            }
        }
    }

    // MARK: helpers

    func deliver(_ batch: [InvalidationDescriptor], _ what: String) throws {
        let r = try link.deliver(batch)
        // The wording of `vtdbridge-sim scenario` (Scenarios.swift), so both transcripts read alike.
        transcript.vmm("INVALIDATE: \(batch.count) descriptor(s) + wait (\(what)) → \(r.maps) MAP_DMA, \(r.unmaps) UNMAP_DMA")
    }

    func gpa(_ page: UInt64) -> UInt64 { 0x10_0000 + page * 0x1000 }

    func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw SimError(message()) }
    }

    func pattern(_ seed: UInt8) -> [UInt8] { (0..<2048).map { UInt8(truncatingIfNeeded: Int(seed) &* 37 &+ $0 &* 11 &+ ($0 >> 8)) } }

    /// DMA faults the VM's kernel has logged (intel-iommu's "DMAR: [DMA …" lines).
    func kernelFaults() -> Int {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/dmesg")
        let pipe = Pipe()
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return -1 }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").filter { $0.contains("DMAR") && $0.contains("fault") }.count
    }

    func expectNewFault(since before: Int) throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while kernelFaults() <= before {
            if ContinuousClock.now > deadline { throw SimError("the VM kernel logged no DMAR fault (count stayed \(before))") }
            usleep(50_000)
        }
        transcript.check("the VM kernel logged a DMAR fault")
    }

    /// RAM at `from` → edu buffer → RAM at `to`, through `sid`'s device.
    func roundTrip(_ sid: SourceID, from: UInt64, to: UInt64, count: UInt64 = 2048) throws {
        let edu = edus[sid]!
        try edu.read(iova: from, count: count)
        try edu.write(iova: to, count: count)
    }

    func counters() throws -> [String: [Int]] {
        let status = try control.require("status")
        var out: [String: [Int]] = [:]
        for d in status["devices"]?.arrayValue ?? [] {
            out[d["guest"]?.stringValue ?? "?"] = [d["maps"]?.intValue ?? -1, d["unmaps"]?.intValue ?? -1]
        }
        return out
    }

    func mappings(_ sid: SourceID) throws -> [JSONValue] {
        try control.require("mappings", ["guest": .string(sid.description)])["mappings"]?.arrayValue ?? []
    }

    func verifyShadow() throws {
        for sid in devices {
            let held = try mappings(sid).map { m in
                "\(m["iova"]?.stringValue ?? "")→\(m["gpa"]?.stringValue ?? "")/\(m["size"]?.stringValue ?? "")/\(permissionValue(m) ?? [])"
            }
            let expected = guest.expected(sid).map {
                "0x\(String($0.iova, radix: 16))→0x\(String($0.leaf.gpa, radix: 16))/0x\(String($0.leaf.size, radix: 16))/\($0.leaf.permission)"
            }
            try expect(held == expected, "\(sid): the daemon holds \(held) but the guest mapped \(expected)")
        }
        transcript.check("the kernel's mappings (the daemon's shadow) equal the guest tables for both devices")
    }

    // MARK: 1. two devices, two domains

    func twoDevices() throws {
        for (d, sid) in devices.enumerated() {
            let dom = UInt16(d + 1)
            let source = gpa(UInt64(d) * 16), target = gpa(UInt64(d) * 16 + 1)
            let bytes = pattern(UInt8(d + 1))
            guest.memory.write(gpa: source, bytes: bytes)
            guest.memory.write(gpa: target, bytes: [UInt8](repeating: 0, count: 4096))
            try deliver(try guest.map(domain: dom, iova: 0x10_0000, gpa: source) + guest.map(domain: dom, iova: 0x20_0000, gpa: target),
                        "\(sid): iova 0x100000 → gpa 0x\(String(source, radix: 16)), iova 0x200000 → gpa 0x\(String(target, radix: 16))")
            try roundTrip(sid, from: 0x10_0000, to: 0x20_0000)
            let landed = guest.memory.read(gpa: target, count: 2048)!
            try expect(landed == bytes, "\(sid): DMA landed \(landed.prefix(8)) instead of \(bytes.prefix(8))")
            transcript.check("\(sid): edu DMA RAM→device→RAM moved exactly the 2048 bytes the guest wrote, into the other page")
        }
        try verifyShadow()
    }

    // MARK: 2. unmap

    func unmapStopsDMA() throws {
        let sid = devices[0]
        let target = gpa(1)
        let before = guest.memory.read(gpa: target, count: 2048)!
        try deliver(try guest.unmap(domain: 1, iova: 0x20_0000), "\(sid): PTE for iova 0x200000 cleared")
        guest.memory.write(gpa: gpa(0), bytes: pattern(99))
        let faults = kernelFaults()
        try edus[sid]!.read(iova: 0x10_0000, count: 2048)
        try edus[sid]!.write(iova: 0x20_0000, count: 2048)
        try expect(guest.memory.read(gpa: target, count: 2048)! == before, "DMA to an unmapped IOVA changed guest memory")
        transcript.check("DMA to the unmapped IOVA did not reach guest memory")
        try expectNewFault(since: faults)
        try verifyShadow()
    }

    // MARK: 3. isolation

    func isolation() throws {
        let (a, b) = (devices[0], devices[1])
        let onlyB = gpa(40)
        guest.memory.write(gpa: onlyB, bytes: [UInt8](repeating: 0x5a, count: 4096))
        try deliver(try guest.map(domain: 2, iova: 0x30_0000, gpa: onlyB), "\(b): iova 0x300000 → gpa 0x\(String(onlyB, radix: 16)), not mapped for \(a)")
        let faults = kernelFaults()
        try edus[a]!.read(iova: 0x10_0000, count: 2048)
        try edus[a]!.write(iova: 0x30_0000, count: 2048)
        try expect(guest.memory.read(gpa: onlyB, count: 4096)! == [UInt8](repeating: 0x5a, count: 4096), "device \(a) wrote into a page mapped only for \(b)")
        transcript.check("\(a) could not reach an IOVA mapped only for \(b)")
        try expectNewFault(since: faults)
        // And B itself can.
        try edus[b]!.read(iova: 0x10_0000, count: 2048)
        try edus[b]!.write(iova: 0x30_0000, count: 2048)
        try expect(guest.memory.read(gpa: onlyB, count: 2048)! == guest.memory.read(gpa: gpa(16), count: 2048)!, "\(b) could not write its own page")
        transcript.check("\(b) reaches it")
    }

    // MARK: 4. replay

    func replay() throws {
        let before = try counters()
        let r = try control.require("replay", ["all": true])
        try expect(r["maps"]?.intValue == 0 && r["unmaps"]?.intValue == 0, "replay made kernel calls: \(r.serialized)")
        try expect(try counters() == before, "the daemon's map/unmap counters moved during a replay")
        transcript.check("replay over unchanged tables: 0 MAP_DMA, 0 UNMAP_DMA; the daemon's counters, the same before and after:")
        transcript.table(["device", "MAP_DMA", "UNMAP_DMA"],
                         before.keys.sorted().map { [$0] + (before[$0] ?? []).map(String.init) })
        // DMA keeps working while replays run in a loop on another connection.
        let stop = ManagedAtomicFlag()
        let path = supervisor.controlSocket
        let replays = ReplayLoop(path: path, stop: stop)
        let thread = Thread { replays.run() }
        thread.start()
        defer { stop.set() }
        let sid = devices[1]
        guest.memory.write(gpa: gpa(16), bytes: pattern(7))
        try deliver(try guest.map(domain: 2, iova: 0x20_0000, gpa: gpa(17)), "\(sid): target page")
        for i in 0..<12 {
            guest.memory.write(gpa: gpa(16), bytes: pattern(UInt8(i)))
            try roundTrip(sid, from: 0x10_0000, to: 0x20_0000)
            try expect(guest.memory.read(gpa: gpa(17), count: 2048)! == pattern(UInt8(i)), "DMA \(i) during replays moved the wrong bytes")
        }
        stop.set()
        while !replays.finished { usleep(10_000) }
        try expect(replays.failures == 0, "\(replays.failures) replay(s) failed: \(replays.lastError)")
        try expect(replays.count >= 5, "only \(replays.count) replays ran during the DMA loop")
        let after = try counters()
        try expect(after[sid.description]?[1] == before[sid.description]?[1], "replays unmapped something: \(before) → \(after)")
        transcript.check("12 DMA round trips correct while \(replays.count) replays ran; no unmap")
    }

    // MARK: 5. large pages

    func largePages() throws {
        let sid = devices[0]
        let base: UInt64 = 0x0a00_0000, region: UInt64 = 0x40_0000
        for off in stride(from: UInt64(0), to: 1 << 21, by: 4096) { guest.memory.write(gpa: region + off, bytes: [UInt8](repeating: 0, count: 16)) }
        try deliver(try guest.map(domain: 1, iova: base, gpa: region, sizeShift: 21), "\(sid): one 2 MiB leaf iova 0x\(String(base, radix: 16)) → gpa 0x\(String(region, radix: 16))")
        let held = try mappings(sid).filter { $0["iova"]?.stringValue == "0x" + String(base, radix: 16) }
        try expect(held.count == 1 && held[0]["size"]?.stringValue == "0x200000", "the 2 MiB leaf is not one 2 MiB VFIO mapping: \(held)")
        transcript.check("the 2 MiB leaf is one 2 MiB VFIO mapping")
        for (i, off) in [UInt64(0), 0x10_0000, 0x1f_f000].enumerated() {
            let bytes = pattern(UInt8(50 + i))
            guest.memory.write(gpa: region + off, bytes: bytes)
            let dest = off == 0 ? 0x8_0000 : off - 0x8_0000
            try roundTrip(sid, from: base + off, to: base + dest)
            try expect(guest.memory.read(gpa: region + dest, count: 2048)! == bytes, "DMA at offset 0x\(String(off, radix: 16)) of the 2 MiB mapping failed")
        }
        transcript.check("DMA works at offsets 0, 1 MiB and 2 MiB - 4 KiB inside it")
    }

    // MARK: 6. context removal and reset

    func contextRemovalAndReset() throws {
        let sid = devices[0]
        try expect(!(try mappings(sid)).isEmpty, "nothing mapped to start with")
        try deliver(try guest.detach(sid), "\(sid): context entry cleared")
        try expect(try mappings(sid).isEmpty, "mappings left after the context entry went")
        let faults = kernelFaults()
        let before = guest.memory.read(gpa: gpa(0), count: 2048)!
        try edus[sid]!.write(iova: 0x10_0000, count: 2048)
        try expect(guest.memory.read(gpa: gpa(0), count: 2048)! == before, "DMA reached memory after the context entry was removed")
        try expectNewFault(since: faults)
        transcript.check("\(sid): everything unmapped; DMA blocked")
        try deliver(try guest.attach(sid, domain: 1), "\(sid): context entry back")
        try verifyShadow()

        let reset = try link.events.request(.reset)
        try expect(reset.status == .ok, "RESET: \(reset.message)")
        transcript.vmm("RESET (guest IOMMU reset)")
        for d in devices { try expect(try mappings(d).isEmpty, "\(d) has mappings after RESET") }
        let status = try control.require("status")
        for d in status["devices"]?.arrayValue ?? [] {
            try expect(d["mappings"]?.intValue == 0, "status still counts mappings after RESET: \(d.serialized)")
        }
        transcript.check("RESET unmapped everything of both devices")
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        transcript.vmm("the guest re-enables its IOMMU: root table, translation on")
        try verifyShadow()
        try roundTrip(devices[1], from: 0x10_0000, to: 0x20_0000)
        transcript.check("DMA works again")
    }

    // MARK: 7. restart

    func restart() throws {
        let sid = devices[1]
        try verifyShadow()
        transcript.line("vm", "SIGKILL vtdbridged (pid \(supervisor.pid))")
        supervisor.kill()
        // The VMM sees the channel close; it drops its device fds (they pin
        // the dead daemon's groups) and reconnects to the new daemon.
        edus.removeAll()
        link.events.close()
        try supervisor.start()
        control = try ControlClient(path: supervisor.controlSocket)
        var attempts = 0
        while true {
            do {
                try attachDevices()
                break
            } catch {
                attempts += 1
                if attempts > 50 { throw SimError("re-attaching after the restart failed: \(error)") }
                usleep(200_000)
            }
        }
        try link.reconnect()
        try verifyShadow()
        transcript.check("after the restart the kernel's mappings equal the guest tables again")
        guest.memory.write(gpa: gpa(16), bytes: pattern(77))
        try roundTrip(sid, from: 0x10_0000, to: 0x20_0000)
        try expect(guest.memory.read(gpa: gpa(17), count: 2048)! == pattern(77), "DMA after the restart moved the wrong bytes")
        transcript.check("DMA works after the restart")
    }

    // MARK: 8. memlock

    func memlock() throws {
        guard eduAddresses.count >= 3 else { throw SimError("the memlock scenario needs a third edu device") }
        let address = eduAddresses[2]
        let group = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/bus/pci/devices/\(address)/iommu_group")) as NSString?)?.lastPathComponent ?? "?"
        // An unprivileged daemon (no CAP_IPC_LOCK) with a 64 KiB lock limit:
        // the kernel charges pinned pages against it.
        let uid = 1000
        chown("/dev/vfio/\(group)", uid_t(uid), gid_t(uid))
        let limited = DaemonSupervisor(binary: daemonBinary, name: "memlock", directory: directory + "-memlock", uid: uid, memlockBytes: 64 << 10)
        try limited.start()
        defer { limited.stop() }
        let ctl = try ControlClient(path: limited.controlSocket)
        _ = try ctl.require("attach", ["host": .string(address), "guest": "00:05.0"])
        transcript.daemon("unprivileged daemon, RLIMIT_MEMLOCK 64 KiB, attached \(address) as 00:05.0")
        let vmm = try VMMLink(eventPath: limited.eventSocket, guest: guest, transcript: transcript)
        try vmm.handshake()
        var batch = try guest.attach(SourceID("00:05.0")!, domain: 5)
        for i in 0..<64 as Range<UInt64> { batch += try guest.map(domain: 5, iova: 0x100_0000 + i * 0x1000, gpa: gpa(100 + i)) }
        let words = (batch + [GuestTableWriter<GuestRAM>.wait]).map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }
        let reply = try vmm.events.request(.invalidate(words))
        guard case let .batch(body) = reply.body else { throw SimError("no batch result") }
        try expect(reply.status == .partial, "expected PARTIAL, got \(reply.status.name): \(reply.message)")
        try expect(body.maps > 0 && body.maps < 64, "expected some maps to succeed before the limit, got \(body.maps)")
        let first = try body.failures.first.map { $0 } ?? { throw SimError("no failure record") }()
        try expect(first.errno == ENOMEM, "failure errno \(first.errno), expected ENOMEM")
        try expect(first.reason.contains("RLIMIT_MEMLOCK"), "the failure does not name RLIMIT_MEMLOCK: \(first.reason)")
        transcript.daemon("\(body.maps) MAP_DMA accepted, then ENOMEM: \(first.reason)")
        transcript.check("the ack names the failure and RLIMIT_MEMLOCK")
        // Still serving.
        let status = try ctl.require("status")
        try expect(status["devices"]?[0]?["mappings"]?.intValue == Int(body.maps), "the shadow does not hold exactly what the kernel accepted")
        try expect(try vmm.events.request(.ping).status == .ok, "the daemon stopped serving the VMM")
        transcript.check("the daemon stays up; its shadow holds exactly the \(body.maps) accepted mappings")
        // The cause goes away (the operator raises the limit); a replay maps
        // the rest, and only the rest.
        let raised = cposix_set_memlock(limited.pid, UInt64(64) << 20)
        try expect(raised == 0, "prlimit(RLIMIT_MEMLOCK) on the daemon failed: \(String(cString: strerror(-raised)))")
        let replay = try ctl.require("replay", ["guest": "00:05.0"])
        try expect(replay["maps"]?.intValue == 64 - Int(body.maps), "the replay made \(replay["maps"]?.intValue ?? -1) maps, expected \(64 - Int(body.maps))")
        try expect(replay["failures"]?.arrayValue?.isEmpty ?? true, "the replay still failed: \(replay["failures"] ?? .null)")
        let after = try ctl.require("status")
        try expect(after["devices"]?[0]?["mappings"]?.intValue == 64, "after the replay the shadow holds \(after["devices"]?[0]?["mappings"]?.intValue ?? -1) mappings, expected 64")
        transcript.check("limit raised to 64 MiB: a replay mapped the \(64 - Int(body.maps)) refused pages and nothing else")
        vmm.events.close()
    }
}

/// A flag shared with the replay thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private var value = false
    private let lock = NSLock()
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Replays every device in a loop until told to stop.
final class ReplayLoop: @unchecked Sendable {
    let path: String
    let stop: ManagedAtomicFlag
    private let lock = NSLock()
    private var _count = 0, _failures = 0, _finished = false
    private var _lastError = ""

    init(path: String, stop: ManagedAtomicFlag) {
        self.path = path
        self.stop = stop
    }

    var count: Int { lock.lock(); defer { lock.unlock() }; return _count }
    var failures: Int { lock.lock(); defer { lock.unlock() }; return _failures }
    var finished: Bool { lock.lock(); defer { lock.unlock() }; return _finished }
    var lastError: String { lock.lock(); defer { lock.unlock() }; return _lastError }

    func run() {
        defer { lock.lock(); _finished = true; lock.unlock() }
        guard let client = try? ControlClient(path: path) else {
            lock.lock(); _failures += 1; _lastError = "cannot connect"; lock.unlock()
            return
        }
        while !stop.isSet {
            do {
                let r = try client.require("replay", ["all": true])
                lock.lock()
                _count += 1
                if r["unmaps"]?.intValue != 0 || r["maps"]?.intValue != 0 { _failures += 1; _lastError = r.serialized }
                lock.unlock()
            } catch {
                lock.lock(); _failures += 1; _lastError = "\(error)"; lock.unlock()
            }
            usleep(20_000)
        }
    }
}
