/// One 128-bit legacy-mode root-table entry (VT-d spec 9.1). The root table is
/// one 4 KiB page of 256 of them, indexed by bus number.
public struct RootEntry: Sendable, Equatable {
    public var low: UInt64
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// P (bit 0).
    public var isPresent: Bool { low & 1 != 0 }
    /// CTP (bits 63:12): the context table of this bus.
    public var contextTablePointer: UInt64 { low & ~0xfff }

    /// Non-zero reserved fields: bits 11:1, address bits at or above the
    /// guest address width, and the whole upper half (legacy mode).
    public func reservedBits(_ caps: IOMMUCapabilities) -> (low: UInt64, high: UInt64) {
        (low & (0xffe | ~caps.addressMask), high)
    }

    public static func encode(contextTable: UInt64) -> RootEntry {
        RootEntry(low: (contextTable & ~0xfff) | 1, high: 0)
    }
}
