import Bridge
import Glibc
import Posix
import VTd
import VTdGuest

/// The simulated guest: RAM in a memfd shared with the daemon, VT-d tables
/// written by the guest-side writer as Linux's intel-iommu would, and a model
/// of what the guest meant to map, which is what the daemon is checked
/// against (not another walk of the same tables).
final class SimulatedGuest {
    let memfd: FileDescriptor
    let ramSize: UInt64
    let memory: GuestRAM
    var writer: GuestTableWriter<GuestRAM>
    let caps: IOMMUCapabilities

    struct Leaf: Equatable {
        var gpa: UInt64
        var size: UInt64
        var permission: DMAPermission
    }
    /// Per domain: iova → leaf, as the guest wrote it.
    private(set) var domains: [UInt16: [UInt64: Leaf]] = [:]
    /// Per device: its domain, or nil when it has no context entry.
    private(set) var deviceDomain: [SourceID: UInt16] = [:]

    /// The top `tableArea` bytes of RAM hold the VT-d tables; data pages are
    /// handed out from the bottom.
    init(ramSize: UInt64, tableArea: UInt64 = 16 << 20, caps: IOMMUCapabilities) throws {
        self.ramSize = ramSize
        self.caps = caps
        memfd = try FileDescriptor.memoryFile(name: "vtdbridge-sim-guest-ram", size: ramSize)
        memory = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: ramSize, backing: .fileDescriptor(memfd, offset: 0))])
        writer = try GuestTableWriter(memory: memory, caps: caps, tableArea: (ramSize - tableArea)..<ramSize)
    }

    var rootTable: UInt64 { writer.rootTable }

    func attach(_ sid: SourceID, domain: UInt16) throws -> [InvalidationDescriptor] {
        if domains[domain] == nil { domains[domain] = [:] }
        deviceDomain[sid] = domain
        return try writer.attach(sid, domain: domain)
    }

    /// Points a device at another domain that already has tables.
    func move(_ sid: SourceID, to domain: UInt16) throws -> [InvalidationDescriptor] {
        if domains[domain] == nil { domains[domain] = [:] }
        let table = try writer.createDomain(domain)
        let previous = deviceDomain[sid]
        deviceDomain[sid] = domain
        return try writer.writeContext(sid, ContextEntry.encode(secondLevelTable: table, domainID: domain, levels: 4), previousDomain: previous)
    }

    func detach(_ sid: SourceID) throws -> [InvalidationDescriptor] {
        deviceDomain[sid] = nil
        return try writer.detach(sid)
    }

    func map(domain: UInt16, iova: UInt64, gpa: UInt64, sizeShift: Int = 12, permission: DMAPermission = .readWrite) throws -> [InvalidationDescriptor] {
        if domains[domain] == nil { _ = try writer.createDomain(domain); domains[domain] = [:] }
        // A leaf replaces whatever it covers, in the model as in the tables:
        // a larger leaf around it, or (for a large leaf) the leaves inside.
        // Only those are looked up, so mapping n pages costs O(n), not O(n²).
        let size = UInt64(1) << UInt64(sizeShift)
        for shift in [21, 30] as [UInt64] where UInt64(sizeShift) < shift {
            let around = iova & ~((1 << shift) - 1)
            if let leaf = domains[domain]![around], around + leaf.size > iova { domains[domain]![around] = nil }
        }
        if sizeShift > 12 {
            domains[domain] = domains[domain]!.filter { !($0.key < iova + size && iova < $0.key + $0.value.size) }
        }
        domains[domain]![iova] = Leaf(gpa: gpa, size: size, permission: permission)
        return try writer.map(domain: domain, iova: iova, gpa: gpa, sizeShift: sizeShift, permission: permission)
    }

    func unmap(domain: UInt16, iova: UInt64, sizeShift: Int = 12) throws -> [InvalidationDescriptor] {
        domains[domain]?[iova] = nil
        return try writer.unmap(domain: domain, iova: iova, sizeShift: sizeShift)
    }

    /// Forgets every mapping of every domain (the guest IOMMU was reset; the
    /// guest rebuilds from scratch).
    func forgetAll() {
        for d in domains.keys { domains[d] = [:] }
    }

    /// What the daemon must hold for `sid`, in IOVA order.
    func expected(_ sid: SourceID) -> [(iova: UInt64, leaf: Leaf)] {
        guard let d = deviceDomain[sid], let leaves = domains[d] else { return [] }
        return leaves.keys.sorted().map { ($0, leaves[$0]!) }
    }

    /// Fills a data page with a pattern and returns it (for DMA checks).
    func fill(gpa: UInt64, count: Int, seed: UInt8) -> [UInt8] {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: Int(seed) &* 31 &+ $0 &* 7) }
        memory.write(gpa: gpa, bytes: bytes)
        return bytes
    }
}
