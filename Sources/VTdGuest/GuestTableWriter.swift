import VTd

/// Writes VT-d structures into guest RAM the way a guest's intel-iommu driver
/// does, and returns the invalidation descriptors that driver would queue.
///
/// It is the guest half of every test and of the simulator: the daemon must
/// never see anything from it but guest RAM and the descriptors, exactly as
/// with a real guest. The invalidations follow Linux's intel-iommu in caching
/// mode (CM=1): a context entry made present is followed by a device-selective
/// context-cache invalidation with DID 0 and a domain-selective IOTLB flush;
/// every PTE made present or cleared by a page-selective IOTLB invalidation.
public struct GuestTableWriter<Memory: GuestMemoryWriter> {
    public let memory: Memory
    public let caps: IOMMUCapabilities
    public private(set) var allocator: TablePageAllocator
    /// The root table: one page, 256 root entries.
    public let rootTable: UInt64
    /// Top-level second-level table of each domain, by DID.
    public private(set) var domainTables: [UInt16: (table: UInt64, levels: Int)] = [:]

    public init(memory: Memory, caps: IOMMUCapabilities, tableArea: Range<UInt64>) throws {
        self.memory = memory
        self.caps = caps
        allocator = TablePageAllocator(start: tableArea.lowerBound, end: tableArea.upperBound)
        rootTable = try allocator.allocate(in: memory)
    }

    // MARK: raw stores

    public func store(_ value: UInt64, at gpa: UInt64) {
        guard let page = memory.mutableTablePage(at: gpa & ~0xfff) else {
            preconditionFailure("store outside guest RAM at 0x\(String(gpa, radix: 16))")
        }
        page[Int((gpa & 0xfff) >> 3)] = value.littleEndian
    }

    public func load(_ gpa: UInt64) -> UInt64 { memory.word(at: gpa) ?? 0 }

    // MARK: domains and context entries

    /// Creates a domain's empty top-level table (the driver does this when a
    /// DMA domain is allocated).
    @discardableResult
    public mutating func createDomain(_ did: UInt16, levels: Int = 4) throws -> UInt64 {
        if let existing = domainTables[did] { return existing.table }
        let table = try allocator.allocate(in: memory)
        domainTables[did] = (table, levels)
        return table
    }

    /// The context table of `bus`, allocated and hooked into the root table on first use.
    public mutating func contextTable(bus: UInt8) throws -> UInt64 {
        let rootSlot = rootTable + UInt64(bus) * 16
        let root = RootEntry(low: load(rootSlot), high: load(rootSlot + 8))
        if root.isPresent { return root.contextTablePointer }
        let table = try allocator.allocate(in: memory)
        let entry = RootEntry.encode(contextTable: table)
        store(entry.high, at: rootSlot + 8)
        store(entry.low, at: rootSlot)
        return table
    }

    /// Points `sourceID` at domain `did` (multi-level) and returns the
    /// invalidations Linux issues in caching mode.
    public mutating func attach(_ sourceID: SourceID, domain did: UInt16, levels: Int = 4) throws -> [InvalidationDescriptor] {
        let table = try createDomain(did, levels: levels)
        let entry = ContextEntry.encode(secondLevelTable: table, domainID: did, levels: domainTables[did]!.levels)
        return try writeContext(sourceID, entry, previousDomain: nil)
    }

    /// Makes `sourceID` a pass-through context entry (TT=10b).
    public mutating func attachPassThrough(_ sourceID: SourceID, domain did: UInt16) throws -> [InvalidationDescriptor] {
        let entry = ContextEntry.encode(secondLevelTable: 0, domainID: did, levels: 4, type: .passThrough)
        return try writeContext(sourceID, entry, previousDomain: nil)
    }

    /// Writes a context entry as given (for tests of malformed entries).
    public mutating func writeContext(_ sourceID: SourceID, _ entry: ContextEntry, previousDomain: UInt16?) throws -> [InvalidationDescriptor] {
        let slot = try contextTable(bus: sourceID.bus) + UInt64(sourceID.devfn) * 16
        let old = ContextEntry(low: load(slot), high: load(slot + 8))
        // Write the high half first so the entry is never present and half-written.
        store(0, at: slot)
        store(entry.high, at: slot + 8)
        store(entry.low, at: slot)
        if old.isPresent {
            let did = previousDomain ?? old.domainID
            return [.contextCache(.device(domainID: did, sourceID: sourceID, functionMask: 0)),
                    .iotlb(.domain(did), drainReads: false, drainWrites: false)]
        }
        // Caching mode: not-present entries may be cached under DID 0.
        return [.contextCache(.device(domainID: 0, sourceID: sourceID, functionMask: 0)),
                .iotlb(.domain(entry.domainID), drainReads: false, drainWrites: false)]
    }

    /// Clears the context entry of `sourceID` (device detached from its domain).
    public mutating func detach(_ sourceID: SourceID) throws -> [InvalidationDescriptor] {
        let slot = try contextTable(bus: sourceID.bus) + UInt64(sourceID.devfn) * 16
        let old = ContextEntry(low: load(slot), high: load(slot + 8))
        guard old.isPresent else { return [] }
        store(0, at: slot)
        store(0, at: slot + 8)
        return [.contextCache(.device(domainID: old.domainID, sourceID: sourceID, functionMask: 0)),
                .iotlb(.domain(old.domainID), drainReads: false, drainWrites: false)]
    }

    // MARK: page tables

    /// Maps [iova, iova + 2^sizeShift) to `gpa` in domain `did`. sizeShift is
    /// 12, 21 or 30. Intermediate tables are created as needed; a large leaf
    /// replaces whatever was at its slot (the replaced subtree is leaked, as the
    /// guest would free it later). Returns the page-selective invalidation.
    public mutating func map(domain did: UInt16, iova: UInt64, gpa: UInt64, sizeShift: Int = 12,
                             permission: DMAPermission = .readWrite) throws -> [InvalidationDescriptor] {
        let level = (sizeShift - 12) / 9 + 1
        precondition([12, 21, 30].contains(sizeShift), "leaf size must be 4K, 2M or 1G")
        precondition(iova & ((1 << UInt64(sizeShift)) - 1) == 0 && gpa & ((1 << UInt64(sizeShift)) - 1) == 0)
        let slot = try slotAddress(domain: did, iova: iova, level: level)
        store(SecondLevelEntry.leaf(gpa, level: level, permission: permission).rawValue, at: slot)
        return [pageInvalidation(domain: did, iova: iova, sizeShift: sizeShift)]
    }

    /// Clears the leaf covering `iova` at the level of `sizeShift`. Returns the
    /// page-selective invalidation, or nothing if there was no table there.
    public mutating func unmap(domain did: UInt16, iova: UInt64, sizeShift: Int = 12) throws -> [InvalidationDescriptor] {
        let level = (sizeShift - 12) / 9 + 1
        guard let slot = existingSlot(domain: did, iova: iova, level: level) else { return [] }
        store(0, at: slot)
        return [pageInvalidation(domain: did, iova: iova, sizeShift: sizeShift)]
    }

    /// Writes a raw value into the entry at `level` for `iova`, creating the
    /// tables above it (for tests of malformed entries). No invalidation.
    public mutating func storeEntry(domain did: UInt16, iova: UInt64, level: Int, raw: UInt64) throws {
        store(raw, at: try slotAddress(domain: did, iova: iova, level: level))
    }

    /// The address of the entry translating `iova` at `level`, if its tables exist.
    public func existingSlot(domain did: UInt16, iova: UInt64, level: Int) -> UInt64? {
        guard let (table, levels) = domainTables[did] else { return nil }
        var current = table
        var l = levels
        while true {
            let slot = current + ((iova >> vtdLevelShift(l)) & 511) * 8
            if l == level { return slot }
            let entry = SecondLevelEntry(rawValue: load(slot))
            guard entry.isPresent, !(entry.pageSize && l <= 3) else { return nil }
            current = entry.address(caps)
            l -= 1
        }
    }

    private mutating func slotAddress(domain did: UInt16, iova: UInt64, level: Int) throws -> UInt64 {
        guard let (table, levels) = domainTables[did] else {
            preconditionFailure("domain \(did) has no tables; call createDomain or attach first")
        }
        var current = table
        var l = levels
        while true {
            let slot = current + ((iova >> vtdLevelShift(l)) & 511) * 8
            if l == level { return slot }
            let entry = SecondLevelEntry(rawValue: load(slot))
            if entry.isPresent && !(entry.pageSize && l <= 3) {
                current = entry.address(caps)
            } else {
                let child = try allocator.allocate(in: memory)
                store(SecondLevelEntry.table(child).rawValue, at: slot)
                current = child
            }
            l -= 1
        }
    }

    /// The invalidation Linux queues for a range: page-selective with the
    /// smallest address mask covering it, or domain-selective when that mask
    /// exceeds CAP.MAMV.
    public func pageInvalidation(domain did: UInt16, iova: UInt64, sizeShift: Int) -> InvalidationDescriptor {
        let am = sizeShift - 12
        if am > caps.maxAddressMask || !caps.pageSelectiveInvalidation {
            return .iotlb(.domain(did), drainReads: false, drainWrites: false)
        }
        return .iotlb(.pages(domainID: did, address: iova, addressMask: UInt8(am), invalidationHint: false),
                      drainReads: false, drainWrites: false)
    }

    /// A wait descriptor that ends a batch (status write, as Linux's qi_submit_sync).
    public static var wait: InvalidationDescriptor {
        .wait(statusWrite: true, interrupt: false, fence: true, statusData: 1, statusAddress: 0)
    }
}
