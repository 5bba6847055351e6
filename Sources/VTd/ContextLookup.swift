/// What the root and context tables say about one source-id.
public enum ContextState: Sendable, Equatable {
    /// The root entry or the context entry is not present: the device's DMA is
    /// blocked (spec fault 0x01/0x02 on access), so nothing is mapped.
    case notPresent
    /// The tables are malformed for this device: nothing is mapped.
    case invalid(TranslationFault)
    /// Translate through the second-level tables at `table`, `levels` deep.
    case translated(domainID: UInt16, table: UInt64, levels: Int)
    /// TT=10b: requests pass through untranslated; the bridge identity-maps RAM.
    case passThrough(domainID: UInt16)

    /// The DID the IOTLB would tag this device's entries with, if any.
    public var domainID: UInt16? {
        switch self {
        case let .translated(did, _, _), let .passThrough(did): did
        case .notPresent, .invalid: nil
        }
    }
}

/// Reads the root entry and the context entry of one source-id (legacy mode,
/// spec 3.4.2 and 3.4.3) and checks them the way hardware would.
public enum ContextLookup {
    public static func lookup<Memory: GuestMemoryReader>(
        sourceID: SourceID, rootTable: UInt64, memory: Memory, caps: IOMMUCapabilities
    ) -> ContextState {
        guard rootTable & 0xfff == 0, rootTable & ~caps.addressMask == 0,
              let roots = memory.tablePage(at: rootTable) else {
            return .invalid(TranslationFault(reason: .rootTableOutsideRAM, value: rootTable,
                                             detail: "root table pointer is not a 4 KiB page of guest RAM"))
        }
        let rootIndex = Int(sourceID.bus) * 2
        let root = RootEntry(low: UInt64(littleEndian: roots[rootIndex]),
                             high: UInt64(littleEndian: roots[rootIndex + 1]))
        guard root.isPresent else { return .notPresent }
        let rootReserved = root.reservedBits(caps)
        if rootReserved.low != 0 || rootReserved.high != 0 {
            return .invalid(TranslationFault(reason: .rootEntryReserved, value: root.low,
                                             detail: "root entry of bus \(sourceID.bus) has reserved bits set"))
        }
        guard let contexts = memory.tablePage(at: root.contextTablePointer) else {
            return .invalid(TranslationFault(reason: .contextTableOutsideRAM, value: root.contextTablePointer,
                                             detail: "context table of bus \(sourceID.bus) is not in guest RAM"))
        }
        let contextIndex = Int(sourceID.devfn) * 2
        let context = ContextEntry(low: UInt64(littleEndian: contexts[contextIndex]),
                                   high: UInt64(littleEndian: contexts[contextIndex + 1]))
        guard context.isPresent else { return .notPresent }
        let reserved = context.reservedBits(caps)
        if reserved.low != 0 || reserved.high != 0 {
            return .invalid(TranslationFault(reason: .contextEntryReserved, value: context.low,
                                             detail: "context entry of \(sourceID) has reserved bits set (low 0x\(String(reserved.low, radix: 16)), high 0x\(String(reserved.high, radix: 16)))"))
        }
        switch context.translationType {
        case .passThrough:
            guard caps.passThrough else {
                return .invalid(TranslationFault(reason: .contextEntryInvalid, value: context.low,
                                                 detail: "pass-through context entry but ECAP.PT is not advertised"))
            }
            return .passThrough(domainID: context.domainID)
        case .reserved:
            return .invalid(TranslationFault(reason: .contextEntryInvalid, value: context.low,
                                             detail: "context entry of \(sourceID) uses the reserved TT encoding 11b"))
        case .multiLevelWithDeviceTLB where !caps.deviceTLB:
            return .invalid(TranslationFault(reason: .contextEntryInvalid, value: context.low,
                                             detail: "TT=01b (device-TLB) but ECAP.DT is not advertised"))
        case .multiLevel, .multiLevelWithDeviceTLB:
            guard let levels = context.levels, caps.supportedLevels.contains(levels) else {
                return .invalid(TranslationFault(reason: .contextEntryInvalid, value: context.high,
                                                 detail: "context entry of \(sourceID) selects AW=\(context.addressWidthField), which CAP.SAGAW does not advertise"))
            }
            return .translated(domainID: context.domainID, table: context.secondLevelTablePointer, levels: levels)
        }
    }
}
