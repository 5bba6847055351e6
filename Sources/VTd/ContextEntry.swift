/// One 128-bit legacy-mode context entry (VT-d spec 9.3). A context table is
/// one 4 KiB page of 256 of them, indexed by devfn.
public struct ContextEntry: Sendable, Equatable {
    public var low: UInt64
    public var high: UInt64

    /// The translation type field (TT, bits 3:2).
    public enum TranslationType: UInt8, Sendable, CustomStringConvertible {
        /// 00b: untranslated requests walk the second-level tables.
        case multiLevel = 0
        /// 01b: as multiLevel, and the device may also use a device-TLB (ATS).
        case multiLevelWithDeviceTLB = 1
        /// 10b: untranslated requests pass through untranslated (needs ECAP.PT).
        case passThrough = 2
        /// 11b: reserved.
        case reserved = 3

        public var description: String {
            switch self {
            case .multiLevel: "multi-level"
            case .multiLevelWithDeviceTLB: "multi-level+device-TLB"
            case .passThrough: "pass-through"
            case .reserved: "reserved"
            }
        }
    }

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// P (bit 0).
    public var isPresent: Bool { low & 1 != 0 }
    /// FPD (bit 1): fault processing disable.
    public var faultProcessingDisabled: Bool { low & 2 != 0 }
    public var translationType: TranslationType { TranslationType(rawValue: UInt8((low >> 2) & 3))! }
    /// SLPTPTR (bits 63:12): the top second-level table.
    public var secondLevelTablePointer: UInt64 { low & ~0xfff }
    /// AW (bits 66:64): 1 = 39-bit/3-level, 2 = 48-bit/4-level, 3 = 57-bit/5-level.
    public var addressWidthField: UInt8 { UInt8(high & 7) }
    /// DID (bits 87:72).
    public var domainID: UInt16 { UInt16((high >> 8) & 0xffff) }

    /// The page-table depth that AW selects, or nil for a reserved encoding.
    public var levels: Int? {
        switch addressWidthField {
        case 1: 3
        case 2: 4
        case 3: 5
        default: nil
        }
    }

    /// Non-zero reserved fields: bits 11:4 and address bits above the guest
    /// address width in the low half; bit 71 and bits 127:88 in the high half.
    public func reservedBits(_ caps: IOMMUCapabilities) -> (low: UInt64, high: UInt64) {
        (low & (0xff0 | ~caps.addressMask), high & 0xffff_ffff_ff00_0080)
    }

    public static func encode(secondLevelTable: UInt64, domainID: UInt16, levels: Int,
                              type: TranslationType = .multiLevel) -> ContextEntry {
        let aw = UInt64(max(0, levels - 2))
        return ContextEntry(low: (secondLevelTable & ~0xfff) | UInt64(type.rawValue) << 2 | 1,
                            high: UInt64(domainID) << 8 | aw)
    }
}
