import Glibc
import VTd
import VTdBridgeClient
import Wire

/// The scripted scenarios: each drives the guest and the VMM, then checks
/// the daemon's shadow against what the guest meant.
struct Scenarios {
    let guest: SimulatedGuest
    let link: VMMLink
    let control: ControlClient
    let devices: [SourceID]
    let transcript: Transcript

    static let all = ["map", "unmap", "remap", "large-pages", "domain-switch", "replay", "context-removal", "reset", "reconnect"]
    /// Run only when named: they need real devices (the vfio backend).
    static let realDevice = ["edu-dma"]
    static var names: [String] { all + realDevice }

    /// Data pages come from the bottom of RAM; 1 MiB up, clear of the tables.
    func dataPage(_ i: UInt64) -> UInt64 { 0x10_0000 + i * 0x1000 }
    func iova(_ i: UInt64) -> UInt64 { 0x1_0000_0000 + i * 0x1000 }

    func run(_ name: String) throws {
        transcript.title(name)
        switch name {
        case "map": try mapScenario()
        case "unmap": try unmapScenario()
        case "remap": try remapScenario()
        case "large-pages": try largePages()
        case "domain-switch": try domainSwitch()
        case "replay": try replay()
        case "context-removal": try contextRemoval()
        case "reset": try reset()
        case "reconnect": try reconnect()
        case "edu-dma": try eduDMA()
        default: throw SimError("no scenario \"\(name)\"; scenarios: \(Self.names.joined(separator: ", "))")
        }
    }

    /// Each device gets its own domain (1, 2, …) the first time.
    func ensureAttached() throws {
        var batch: [InvalidationDescriptor] = []
        for (i, sid) in devices.enumerated() where guest.deviceDomain[sid] == nil {
            batch += try guest.attach(sid, domain: UInt16(i + 1))
            transcript.guest("context entry: \(sid) → domain \(i + 1)")
        }
        if !batch.isEmpty { try deliver(batch, "context-cache + IOTLB invalidations") }
    }

    func deliver(_ batch: [InvalidationDescriptor], _ what: String) throws {
        let r = try link.deliver(batch)
        transcript.vmm("INVALIDATE: \(batch.count) descriptor(s) + wait (\(what))")
        transcript.daemon("acked: \(r.maps) map(s), \(r.unmaps) unmap(s), \(r.faults) fault(s), wait \(r.waits > 0 ? "completed" : "pending")")
    }

    func domain(_ sid: SourceID) -> UInt16 { guest.deviceDomain[sid]! }

    func mapScenario() throws {
        try ensureAttached()
        for (d, sid) in devices.enumerated() {
            var batch: [InvalidationDescriptor] = []
            for i in 0..<16 as Range<UInt64> {
                batch += try guest.map(domain: domain(sid), iova: iova(i), gpa: dataPage(UInt64(d) * 64 + i))
            }
            transcript.guest("\(sid): map 16 pages iova 0x\(String(iova(0), radix: 16))… → gpa 0x\(String(dataPage(UInt64(d) * 64), radix: 16))…")
            try deliver(batch, "16 page-selective IOTLB invalidations")
        }
        try verifyAll()
    }

    func unmapScenario() throws {
        try ensureAttached()
        let sid = devices[0]
        if guest.expected(sid).isEmpty { try mapScenario() }
        var batch: [InvalidationDescriptor] = []
        for i in stride(from: 0, to: 16, by: 2) as StrideTo<UInt64> {
            batch += try guest.unmap(domain: domain(sid), iova: iova(i))
        }
        transcript.guest("\(sid): clear 8 PTEs (every other page)")
        try deliver(batch, "8 page-selective invalidations")
        try verifyAll()
    }

    func remapScenario() throws {
        try ensureAttached()
        let sid = devices[0]
        var batch: [InvalidationDescriptor] = []
        for i in 1..<5 as Range<UInt64> {
            batch += try guest.map(domain: domain(sid), iova: iova(i), gpa: dataPage(200 + i), permission: i % 2 == 0 ? .readWrite : .read)
        }
        transcript.guest("\(sid): point 4 IOVAs at other pages, two of them read-only")
        try deliver(batch, "4 page-selective invalidations")
        try verifyAll()
    }

    func largePages() throws {
        try ensureAttached()
        let sid = devices[0]
        var batch = try guest.map(domain: domain(sid), iova: 0x4000_0000, gpa: 0x20_0000, sizeShift: 21)
        transcript.guest("\(sid): 2 MiB leaf iova 0x40000000 → gpa 0x200000")
        if guest.ramSize >= (2 << 30) {
            batch += try guest.map(domain: domain(sid), iova: 0x80_0000_0000, gpa: 0x4000_0000, sizeShift: 30)
            transcript.guest("\(sid): 1 GiB leaf iova 0x8000000000 → gpa 0x40000000")
        }
        try deliver(batch, "page-selective invalidations with AM 9 and 18")
        try verifyAll()
    }

    func domainSwitch() throws {
        try ensureAttached()
        let sid = devices[0]
        let target: UInt16 = 100
        var batch = try guest.map(domain: target, iova: iova(0), gpa: dataPage(300))
        batch += try guest.map(domain: target, iova: iova(1), gpa: dataPage(301))
        try deliver(batch, "domain \(target) populated (no device uses it yet)")
        try deliver(try guest.move(sid, to: target), "context-cache invalidation")
        transcript.guest("\(sid): moved to domain \(target)")
        try verifyAll()
    }

    func replay() throws {
        try ensureAttached()
        let before = try counters()
        let result = try control.require("replay", ["all": true])
        let after = try counters()
        transcript.daemon("replay: \(result["maps"]?.intValue ?? -1) map(s), \(result["unmaps"]?.intValue ?? -1) unmap(s)")
        guard result["maps"]?.intValue == 0, result["unmaps"]?.intValue == 0, before == after else {
            throw SimError("a replay over unchanged tables made kernel calls: \(result.serialized)")
        }
        transcript.check("replay over unchanged tables: 0 ioctls")
        try verifyAll()
    }

    func contextRemoval() throws {
        try ensureAttached()
        let sid = devices[0]
        if guest.expected(sid).isEmpty {
            try deliver(try guest.map(domain: domain(sid), iova: iova(0), gpa: dataPage(0)), "one page")
        }
        try deliver(try guest.detach(sid), "context-cache invalidation")
        transcript.guest("\(sid): context entry cleared")
        try verifyAll()
        try deliver(try guest.attach(sid, domain: 1), "context entry restored")
    }

    func reset() throws {
        try ensureAttached()
        let sid = devices[0]
        if guest.expected(sid).isEmpty {
            try deliver(try guest.map(domain: domain(sid), iova: iova(0), gpa: dataPage(0)), "one page")
        }
        let r = try link.events.request(.reset)
        guard r.status == .ok else { throw SimError("RESET: \(r.status.name): \(r.message)") }
        transcript.vmm("RESET (guest IOMMU reset)")
        for d in devices {
            let held = try mappings(d)
            guard held.isEmpty else { throw SimError("\(d) still has \(held.count) mapping(s) after RESET") }
            transcript.check("\(d): no mapping after RESET")
        }
        // The guest boots its IOMMU again: same tables, root pointer, TE.
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        transcript.vmm("root table set, translation on again")
        try verifyAll()
    }

    func reconnect() throws {
        try ensureAttached()
        if guest.expected(devices[0]).isEmpty { try mapScenario() }
        let before = try counters()
        try link.reconnect()
        let after = try counters()
        guard before == after else {
            throw SimError("reconnecting changed kernel mappings: before \(before), after \(after)")
        }
        transcript.check("reconnect: mappings untouched (no unmap window)")
        try verifyAll()
    }

    // MARK: checks

    struct Held: Equatable {
        var iova: UInt64, gpa: UInt64, size: UInt64, permission: DMAPermission
    }

    func mappings(_ sid: SourceID) throws -> [Held] {
        let object = try control.require("mappings", ["guest": .string(sid.description)])
        guard let list = object["mappings"]?.arrayValue else { throw SimError("mappings reply without a list: \(object.serialized)") }
        return try list.map { m in
            guard let iova = hexValue(m["iova"]), let gpa = hexValue(m["gpa"]), let size = hexValue(m["size"]),
                  let permission = permissionValue(m) else {
                throw SimError("malformed mapping \(m.serialized)")
            }
            return Held(iova: iova, gpa: gpa, size: size, permission: permission)
        }
    }

    /// (maps, unmaps) of every device: a change means kernel calls were made.
    func counters() throws -> [String: [Int]] {
        let status = try control.require("status")
        var out: [String: [Int]] = [:]
        for d in status["devices"]?.arrayValue ?? [] {
            out[d["guest"]?.stringValue ?? "?"] = [d["maps"]?.intValue ?? -1, d["unmaps"]?.intValue ?? -1]
        }
        return out
    }

    func verifyAll() throws {
        for sid in devices {
            let held = try mappings(sid)
            let expected = guest.expected(sid).map {
                Held(iova: $0.iova, gpa: $0.leaf.gpa, size: $0.leaf.size, permission: $0.leaf.permission)
            }
            guard held == expected else {
                throw SimError("\(sid): the daemon holds \(held.count) mapping(s) but the guest mapped \(expected.count); first difference: held \(held.first { !expected.contains($0) }.map { "\($0)" } ?? "-"), expected \(expected.first { !held.contains($0) }.map { "\($0)" } ?? "-")")
            }
            transcript.check("\(sid): \(held.count) mapping(s), exactly as the guest wrote them")
        }
    }
}

func hexValue(_ v: JSONValue?) -> UInt64? {
    guard let s = v?.stringValue, s.hasPrefix("0x") else { return nil }
    return UInt64(s.dropFirst(2), radix: 16)
}

/// The permission of a mapping record of the control protocol, which
/// spells it as two booleans ("read", "write"); nil if either is missing.
func permissionValue(_ m: JSONValue) -> DMAPermission? {
    guard let read = m["read"]?.boolValue, let write = m["write"]?.boolValue else { return nil }
    var permission: DMAPermission = []
    if read { permission.insert(.read) }
    if write { permission.insert(.write) }
    return permission
}
