/// The guest IOMMU's capability and extended capability registers (VT-d spec
/// 11.4.2 and 11.4.3), decoded for the fields the bridge depends on.
public struct IOMMUCapabilities: Sendable, Equatable {
    /// CAP_REG as the VMM's emulated IOMMU advertises it.
    public var cap: UInt64
    /// ECAP_REG as the VMM's emulated IOMMU advertises it.
    public var ecap: UInt64

    public init(cap: UInt64, ecap: UInt64) {
        self.cap = cap
        self.ecap = ecap
    }

    /// Builds register values for the common case; used by the simulator and
    /// tests, and as the offline inspector's default.
    public static func make(cachingMode: Bool = true, addressWidth: Int = 48, levels: Set<Int> = [3, 4],
                            largePages2M: Bool = true, largePages1G: Bool = true,
                            passThrough: Bool = true, deviceTLB: Bool = false, snoopControl: Bool = false,
                            maxAddressMask: Int = 18) -> IOMMUCapabilities {
        var cap: UInt64 = 0
        cap |= 6                                          // ND: 16-bit domain ids
        if cachingMode { cap |= 1 << 7 }                  // CM
        for l in levels { cap |= 1 << (8 + UInt64(l - 2)) } // SAGAW bit 1: 3-level, bit 2: 4-level, bit 3: 5-level
        cap |= UInt64((addressWidth - 1) & 0x3f) << 16    // MGAW
        if largePages2M { cap |= 1 << 34 }                // SLLPS bit 0: 2 MiB
        if largePages1G { cap |= 1 << 35 }                // SLLPS bit 1: 1 GiB
        cap |= 1 << 39                                    // PSI
        cap |= UInt64(maxAddressMask & 0x3f) << 48        // MAMV
        var ecap: UInt64 = 1 << 1                          // QI
        if deviceTLB { ecap |= 1 << 2 }                   // DT
        if passThrough { ecap |= 1 << 6 }                 // PT
        if snoopControl { ecap |= 1 << 7 }                // SC
        return IOMMUCapabilities(cap: cap, ecap: ecap)
    }

    /// CAP.CM (bit 7): the IOMMU may cache not-present and erroneous entries,
    /// so software must invalidate after making an entry present. Shadowing
    /// depends on it: without it a guest maps pages without telling anyone.
    public var cachingMode: Bool { cap & (1 << 7) != 0 }

    /// CAP.SAGAW (bits 12:8) as a set of supported page-table depths.
    public var supportedLevels: Set<Int> {
        var levels: Set<Int> = []
        for bit in 1...3 where cap & (1 << (8 + UInt64(bit))) != 0 { levels.insert(bit + 2) }
        return levels
    }

    /// CAP.MGAW (bits 21:16) + 1: the guest address width. Output addresses
    /// above it are reserved bits in every entry (the "HAW" of the spec's
    /// reserved-field definitions).
    public var addressWidth: Int { Int((cap >> 16) & 0x3f) + 1 }

    /// Mask of the address bits an entry may carry (bits 63:HAW are reserved).
    public var addressMask: UInt64 {
        addressWidth >= 64 ? ~0 : (UInt64(1) << UInt64(addressWidth)) - 1
    }

    /// CAP.SLLPS bit 0 (CAP bit 34): 2 MiB second-level leaves.
    public var supports2MPages: Bool { cap & (1 << 34) != 0 }
    /// CAP.SLLPS bit 1 (CAP bit 35): 1 GiB second-level leaves.
    public var supports1GPages: Bool { cap & (1 << 35) != 0 }
    /// CAP.PSI (bit 39): page-selective IOTLB invalidation.
    public var pageSelectiveInvalidation: Bool { cap & (1 << 39) != 0 }
    /// CAP.MAMV (bits 53:48): the largest address mask a page-selective
    /// invalidation may carry.
    public var maxAddressMask: Int { Int((cap >> 48) & 0x3f) }

    /// ECAP.QI (bit 1): queued invalidation.
    public var queuedInvalidation: Bool { ecap & (1 << 1) != 0 }
    /// ECAP.DT (bit 2): device-TLBs; makes TT=01 valid and frees bit 62 (TM) of leaves.
    public var deviceTLB: Bool { ecap & (1 << 2) != 0 }
    /// ECAP.PT (bit 6): pass-through context entries (TT=10).
    public var passThrough: Bool { ecap & (1 << 6) != 0 }
    /// ECAP.SC (bit 7): snoop control; frees bit 11 (SNP) of leaves.
    public var snoopControl: Bool { ecap & (1 << 7) != 0 }
}
