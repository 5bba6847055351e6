import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

extension KillSoak {
    // MARK: DMA through the kept pages and the unmapped IOVAs

    struct Sample {
        var sid: SourceID
        var slot: Int          // 0..<4 within the device; the buffer slot
        var global: Int        // 0..<8 over both devices; the page offsets
        var iova: UInt64       // the 4 KiB page DMA goes through
        var gpa: UInt64        // the page it maps (kept) or mapped (unmapped)
        var leaf: SimulatedGuest.Leaf
        var recent: Bool
        var text: String { "\(sid) iova 0x\(String(iova, radix: 16)) (gpa 0x\(String(gpa, radix: 16)), \(leaf.permission)\(leaf.size > 4096 ? ", in a 2 MiB leaf" : "")\(recent ? ", touched by the last batches" : ""))" }
    }

    /// A page-sized pattern unique to this round and this page.
    func pattern(round: Int, gpa: UInt64) -> [UInt8] {
        var r = SplitMix64(seed: seed &+ UInt64(round) &* 0x1_0000_0001 ^ gpa)
        var out = [UInt8](repeating: 0, count: 4096)
        out.withUnsafeMutableBytes { p in
            for i in stride(from: 0, to: 4096, by: 8) { p.storeBytes(of: r.next(), toByteOffset: i, as: UInt64.self) }
        }
        return out
    }

    /// Up to 4 kept pages and 4 unmapped IOVAs per device, the last batches'
    /// first; DMA through them on both devices at once; then every guest
    /// page these domains ever mapped must hold exactly what those DMAs
    /// should have written, and nothing else may have changed.
    func dmaCheck() throws -> String {
        round += 1
        var kept: [Sample] = []
        var unmapped: [Sample] = []
        for (i, (sid, d)) in domains.enumerated() {
            func choose(_ pool: [UInt64], _ recent: [UInt64], _ n: Int) -> [(UInt64, Bool)] {
                var chosen: [(UInt64, Bool)] = []
                var r = Array(Set(recent).intersection(pool)).sorted()
                samples.shuffle(&r)
                for iova in r.prefix(n / 2) { chosen.append((iova, true)) }
                var rest = pool.filter { iova in !chosen.contains { $0.0 == iova } }.sorted()
                samples.shuffle(&rest)
                for iova in rest.prefix(n - chosen.count) { chosen.append((iova, false)) }
                return chosen
            }
            let lastMapped = lastBatchTouched.filter { $0.0 == d && $0.2 }.map(\.1)
            let lastUnmapped = lastBatchTouched.filter { $0.0 == d && !$0.2 }.map(\.1)
            for (j, (iova, recent)) in choose(Array(live[d]!.keys), (recentMapped[d] ?? []) + lastMapped, 4).enumerated() {
                let leaf = live[d]![iova]!
                let sub = leaf.size > 4096 ? UInt64(samples.below(Int(leaf.size >> 12))) << 12 : 0
                kept.append(Sample(sid: sid, slot: j, global: i * 4 + j, iova: iova + sub, gpa: leaf.gpa + sub, leaf: leaf, recent: recent))
            }
            let unmappedPool = gone[d]!.keys.filter { live[d]![$0] == nil }
            for (j, (iova, recent)) in choose(unmappedPool, (recentUnmapped[d] ?? []) + lastUnmapped, 4).enumerated() {
                let leaf = gone[d]![iova]!
                let sub = leaf.size > 4096 ? UInt64(samples.below(Int(leaf.size >> 12))) << 12 : 0
                unmapped.append(Sample(sid: sid, slot: j, global: i * 4 + j, iova: iova + sub, gpa: leaf.gpa + sub, leaf: leaf, recent: recent))
            }
        }

        // Fresh contents: each kept page, and each domain's scratch source
        // (the bytes a write-only page and the unmapped IOVAs are sent).
        let memory = guest.memory
        var pages: [UInt64: [UInt8]] = [:]
        for s in kept where pages[s.gpa] == nil {
            pages[s.gpa] = pattern(round: round, gpa: s.gpa)
            memory.write(gpa: s.gpa, bytes: pages[s.gpa]!)
        }
        var scratch: [UInt16: [UInt8]] = [:]
        for (_, d) in domains {
            scratch[d] = pattern(round: round, gpa: Self.scratchGPA(d))
            memory.write(gpa: Self.scratchGPA(d), bytes: scratch[d]!)
            memory.write(gpa: Self.scratchGPA(d) + 0x1000, bytes: [UInt8](repeating: 0, count: 4096))
        }
        // What guest RAM must look like afterwards: as now, plus the expected writes.
        guard var expected = memory.read(gpa: 0, count: Int(Self.watched)) else { throw SimError("cannot read guest RAM") }
        func expect(_ gpa: UInt64, _ bytes: ArraySlice<UInt8>) {
            expected.replaceSubrange(Int(gpa)..<Int(gpa) + bytes.count, with: bytes)
        }

        // The DMA programme of each device. edu's buffer: [0, 1 KiB) gets the
        // kept pages' bytes, [2 KiB, 4 KiB) the domain's scratch source.
        let count: UInt64 = 256
        var programme: [SourceID: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)]] = [:]
        for (sid, d) in domains {
            var p: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)] = [(Self.scratchSource, EduDevice.buffer + 2048, 1024, false)]
            for s in kept where s.sid == sid {
                let a = UInt64(s.global) * count, b = 2048 + UInt64(s.global) * count
                let slot = EduDevice.buffer + UInt64(s.slot) * count
                if s.leaf.permission.contains(.read) {
                    p.append((s.iova + a, slot, count, false))
                    let source = pages[s.gpa]![Int(a)..<Int(a + count)]
                    if s.leaf.permission.contains(.write) {
                        p.append((slot, s.iova + b, count, true))
                        expect(s.gpa + b, source)
                    } else {
                        p.append((slot, Self.scratchTarget + UInt64(s.slot) * count, count, true))
                        expect(Self.scratchGPA(d) + 0x1000 + UInt64(s.slot) * count, source)
                        // Read-only: a write through it must not land.
                        p.append((slot, s.iova + b, count, true))
                    }
                } else {
                    p.append((EduDevice.buffer + 2048 + UInt64(s.slot) * count, s.iova + b, count, true))
                    expect(s.gpa + b, scratch[d]![Int(s.slot) * Int(count)..<(Int(s.slot) + 1) * Int(count)])
                }
            }
            for s in unmapped where s.sid == sid {
                p.append((EduDevice.buffer + 2048 + UInt64(s.slot) * count, s.iova + 1024 + UInt64(s.slot) * count, count, true))
            }
            programme[sid] = p
        }

        // Fault lines logged before this round's DMA belong to the last
        // round; those after it, to this one (edu raises the fault while the
        // transfer runs, before it reports it done).
        let earlier = kernelLog.faults()
        let dmaStart = ContinuousClock.now
        try runParallel(programme)
        let dmaTime = seconds(dmaStart.duration(to: .now))
        let faultLines = kernelLog.faults()
        stats.faultLines += earlier.count + faultLines.count

        // Compare every watched page (memcmp first: this runs under TCG).
        guard let host = memory.hostAddress(gpa: 0, size: Self.watched), let ram = UnsafeRawPointer(bitPattern: UInt(host)) else {
            throw SimError("cannot read guest RAM")
        }
        let same = expected.withUnsafeBytes { memcmp($0.baseAddress!, ram, Int(Self.watched)) == 0 }
        if !same {
            let actual = Array(UnsafeRawBufferPointer(start: ram, count: Int(Self.watched)))
            var problems: [String] = []
            for page in stride(from: 0, to: Int(Self.watched), by: 4096) where actual[page..<page + 4096] != expected[page..<page + 4096] {
                let gpa = UInt64(page)
                let first = (page..<page + 4096).first { actual[$0] != expected[$0] }!
                let last = (page..<page + 4096).last { actual[$0] != expected[$0] }!
                var who = unmapped.filter { $0.gpa == gpa }.map { "DMA through unmapped \($0.text) reached it" }
                who += kept.filter { $0.gpa == gpa }.map { "kept \($0.text) did not get its expected bytes\($0.leaf.permission.contains(.write) ? "" : ", or a write through it landed")" }
                if gpa >= Self.scratchGPA(1) && gpa < Self.scratchGPA(UInt16(domains.count)) + 0x2000 { who.append("a domain's scratch page (read-only kept pages copy here)") }
                problems.append("gpa 0x\(String(gpa + UInt64(first - page), radix: 16))..0x\(String(gpa + UInt64(last - page), radix: 16)) differs from what was expected\(who.isEmpty ? " (no sampled page maps it)" : ": " + who.joined(separator: "; "))")
            }
            throw SimError("""
                edu DMA after the restart: \(problems.count) guest page(s) not as expected:
                  \(problems.prefix(10).joined(separator: "\n  "))
                kept pages probed: \(kept.map(\.text))
                unmapped IOVAs probed: \(unmapped.map(\.text))
                DMAR faults logged: \(faultLines.map { "\($0.device) 0x\(String($0.page, radix: 16))" })
                """)
        }
        // A logged fault at a kept page would mean the kernel lost it.
        let keptPages = Set(kept.filter { $0.leaf.permission.contains(.write) }.map { KernelLog.Fault(device: deviceName($0.sid), page: $0.iova, write: true) }
                            + kept.filter { $0.leaf.permission.contains(.read) }.map { KernelLog.Fault(device: deviceName($0.sid), page: $0.iova, write: false) })
        // Every kept page was just shown to work, so a fault line naming one
        // can only be a late record of an earlier round: noted, not failed.
        let atKept = faultLines.filter { keptPages.contains($0) }
        stats.faultsAtKept += atKept.count
        let unmappedPages = Set(unmapped.map { "\(deviceName($0.sid)) \($0.iova)" })
        let atUnmapped = faultLines.filter { unmappedPages.contains("\($0.device) \($0.page)") }.count
        stats.faultsAtUnmapped += atUnmapped
        stats.keptChecked += kept.count
        stats.unmappedChecked += unmapped.count
        let recentKept = kept.filter(\.recent).count, recentGone = unmapped.filter(\.recent).count
        return "DMA: \(kept.count) kept page(s) (\(recentKept) from the last batches) hit their guest page, "
            + "\(unmapped.count) unmapped IOVA(s) (\(recentGone) from the last batches) reached no memory (DMA \(String(format: "%.1f", dmaTime)) s); "
            + "DMAR fault lines \(faultLines.count)\(atKept.isEmpty ? "" : ", \(atKept.count) naming a kept page (a late record)")"
    }

    /// The device as the VM kernel names it in fault lines ("00:03.0").
    func deviceName(_ sid: SourceID) -> String {
        let i = domains.firstIndex { $0.sid == sid }!
        return String(runner.eduAddresses[i].dropFirst(5))
    }

    /// Runs each device's DMA list in order, the devices side by side (edu
    /// finishes a transfer on a 100 ms timer, so two at once halve the time).
    func runParallel(_ programme: [SourceID: [(source: UInt64, destination: UInt64, count: UInt64, toRAM: Bool)]]) throws {
        var next: [SourceID: Int] = [:]
        var started: [SourceID: ContinuousClock.Instant] = [:]
        for sid in programme.keys { next[sid] = 0 }
        while true {
            var running = 0
            for (sid, list) in programme {
                guard let edu = runner.edus[sid] else { throw SimError("\(sid) has no device fd") }
                let i = next[sid]!
                if let t = started[sid] {
                    if try edu.busy {
                        if t.duration(to: .now) > .seconds(20) { throw SimError("edu \(edu.address): DMA \(i) did not finish in 20 s") }
                        running += 1
                        continue
                    }
                    started[sid] = nil
                    next[sid] = i + 1
                }
                let j = next[sid]!
                if j < list.count {
                    try edu.start(source: list[j].source, destination: list[j].destination, count: list[j].count, toRAM: list[j].toRAM)
                    started[sid] = .now
                    running += 1
                }
            }
            if running == 0 { return }
            usleep(2_000)
        }
    }
}
