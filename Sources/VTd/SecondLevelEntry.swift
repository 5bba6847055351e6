/// One 64-bit second-level paging entry (VT-d spec 9.8), at any level.
///
/// Levels are numbered as in the spec: 1 is the 4 KiB page table, 2 the page
/// directory (PS=1: a 2 MiB leaf), 3 the PDPT (PS=1: a 1 GiB leaf), 4 the PML4
/// and 5 the PML5.
public struct SecondLevelEntry: Sendable, Equatable {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// R and W (bits 0 and 1) of this entry alone; a walk ANDs them over levels.
    public var permission: DMAPermission { DMAPermission(rawValue: UInt8(truncatingIfNeeded: rawValue) & 3) }
    /// An entry with neither R nor W set is not present (spec 3.6); its other
    /// bits are ignored and not checked.
    public var isPresent: Bool { rawValue & 3 != 0 }
    /// PS (bit 7), meaningful at levels 2 and 3 only.
    public var pageSize: Bool { rawValue & 0x80 != 0 }

    /// Bits 63 and 61:52 are ignored by hardware and free for software.
    static let ignoredBits: UInt64 = 0xbff0_0000_0000_0000
    /// TM (bit 62): transient mapping, defined only with device-TLBs.
    static let transientMapping: UInt64 = 1 << 62
    /// SNP (bit 11): snoop, defined only with snoop control.
    static let snoop: UInt64 = 1 << 11

    /// The bits that must be zero in this entry when it is present at `level`,
    /// given whether it is a leaf. Mirrors the reserved-field rules of spec 9.8.
    public static func reservedMask(level: Int, leaf: Bool, caps: IOMMUCapabilities) -> UInt64 {
        // Everything above the address width is reserved, except the ignored bits.
        var allowed = caps.addressMask | ignoredBits
        var mask: UInt64 = 0
        if leaf {
            if caps.deviceTLB { allowed |= transientMapping }
            if !caps.snoopControl { mask |= snoop }
            switch level {
            case 2: mask |= 0x1f_f000    // a 2 MiB frame is 2 MiB-aligned: bits 20:12 reserved
            case 3: mask |= 0x3fff_f000  // a 1 GiB frame: bits 29:12 reserved
            default: break
            }
        } else {
            // Non-leaf entries carry no SNP or TM (spec 9.8: bits 11 and 62 reserved).
            mask |= snoop
            // At level 4 and 5 bit 7 (PS) is reserved: there are no 512 GiB leaves.
            if level >= 4 { mask |= 0x80 }
        }
        return mask | ~allowed
    }

    /// The output address: the next table, or the leaf's page frame.
    public func address(_ caps: IOMMUCapabilities) -> UInt64 {
        rawValue & caps.addressMask & ~0xfff
    }

    public static func table(_ gpa: UInt64) -> SecondLevelEntry {
        // Linux's intel-iommu sets R and W on non-leaf entries; do the same.
        SecondLevelEntry(rawValue: (gpa & ~0xfff) | 3)
    }

    public static func leaf(_ gpa: UInt64, level: Int, permission: DMAPermission) -> SecondLevelEntry {
        var v = gpa & ~0xfff | UInt64(permission.rawValue)
        if level > 1 { v |= 0x80 }
        return SecondLevelEntry(rawValue: v)
    }
}

/// Bits of IOVA each level resolves: level n covers bits (12 + 9n - 1):(12 + 9(n-1)).
@inlinable
public func vtdLevelShift(_ level: Int) -> UInt64 { UInt64(12 + 9 * (level - 1)) }
