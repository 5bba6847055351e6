/// Why a piece of the guest's translation was not (or could not be) mirrored.
///
/// Faults are counted and logged, never mapped. The VT-d related ones mirror the
/// fault reasons of spec 7.1.3 (table 26); the host ones are the bridge's own
/// refusals of an untrusted guest.
public enum FaultReason: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// The root table pointer does not name a page of guest RAM.
    case rootTableOutsideRAM = "root-table-outside-ram"
    /// A present root entry has a reserved bit set (spec fault 0x0A).
    case rootEntryReserved = "root-entry-reserved"
    /// The context table does not lie in guest RAM (spec fault 0x09).
    case contextTableOutsideRAM = "context-table-outside-ram"
    /// A present context entry has a reserved bit set (spec fault 0x0B).
    case contextEntryReserved = "context-entry-reserved"
    /// A context entry programs an invalid TT or an unadvertised AW (spec fault 0x03).
    case contextEntryInvalid = "context-entry-invalid"
    /// A second-level table does not lie in guest RAM (spec fault 0x07).
    case tableOutsideRAM = "table-outside-ram"
    /// A present second-level entry has a reserved bit set (spec fault 0x0C).
    case entryReserved = "entry-reserved"
    /// A leaf whose guest-physical frame is not wholly inside one RAM region.
    case leafOutsideRAM = "leaf-outside-ram"
    /// A leaf whose IOVA range is outside the host IOMMU's usable IOVA ranges.
    case iovaNotUsable = "iova-not-usable"
    /// A sync read as many paging entries as the walk budget allows and
    /// stopped there: the guest's tables alias themselves, or the space is
    /// larger than the config key walk-budget allows. What lies beyond the
    /// stop point was left as it was.
    case walkBudgetExceeded = "walk-budget-exceeded"
    /// The address space reached its mapping quota.
    case quotaExceeded = "quota-exceeded"
    /// The kernel refused a map or unmap (the error says why).
    case backendError = "backend-error"
    /// A region of guest RAM became unreadable (its backing file shrank
    /// under the daemon) and was dropped from the memory table.
    case guestRAMLost = "guest-ram-lost"
    /// A vfio-user client sent a DMA_MAP without a file descriptor (QEMU does
    /// for BIOS and ROM ranges and for BAR peer-to-peer windows): there is no
    /// memory to map, so the device cannot reach that range.
    case dmaMapWithoutFile = "dma-map-without-file"

    public var description: String { rawValue }
}

/// One fault, with where it happened.
public struct TranslationFault: Sendable, Equatable, CustomStringConvertible {
    public var reason: FaultReason
    /// The IOVA being translated (start of the entry's range), when known.
    public var iova: UInt64?
    /// The table level (1...5) of the entry at fault, when it is a paging entry.
    public var level: Int?
    /// The raw entry or address that was refused.
    public var value: UInt64
    /// A human-readable detail.
    public var detail: String

    public init(reason: FaultReason, iova: UInt64? = nil, level: Int? = nil, value: UInt64 = 0, detail: String = "") {
        self.reason = reason
        self.iova = iova
        self.level = level
        self.value = value
        self.detail = detail
    }

    public var description: String {
        var s = reason.rawValue
        if let iova { s += " iova=0x\(String(iova, radix: 16))" }
        if let level { s += " level=\(level)" }
        s += " value=0x\(String(value, radix: 16))"
        if !detail.isEmpty { s += ": \(detail)" }
        return s
    }
}
