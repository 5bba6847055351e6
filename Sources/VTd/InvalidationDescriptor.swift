/// A 128-bit queued-invalidation descriptor (VT-d spec 6.5.2), decoded.
///
/// The VMM forwards descriptors exactly as the guest wrote them into its
/// invalidation queue; `decode` checks the type and reserved fields the way
/// the hardware does before it acts (an invalid descriptor raises IQE).
public enum InvalidationDescriptor: Sendable, Equatable {
    /// Context-cache invalidation (type 1, spec 6.5.2.1).
    case contextCache(ContextCacheScope)
    /// IOTLB invalidation (type 2, spec 6.5.2.3).
    case iotlb(IOTLBScope, drainReads: Bool, drainWrites: Bool)
    /// Device-TLB invalidation (type 3): accepted; the host IOMMU has no
    /// device-TLB state of ours to flush.
    case deviceTLB(sourceID: SourceID, address: UInt64, sizeBit: Bool)
    /// Interrupt-entry-cache invalidation (type 4): accepted; interrupt
    /// remapping is the VMM's business, not ours.
    case interruptEntryCache(global: Bool, index: UInt16, indexMask: UInt8)
    /// Invalidation wait (type 5, spec 6.5.2.8): a completion point. Everything
    /// before it must be done before the VMM signals it to the guest.
    case wait(statusWrite: Bool, interrupt: Bool, fence: Bool, statusData: UInt32, statusAddress: UInt64)

    public enum ContextCacheScope: Sendable, Equatable {
        case global
        case domain(UInt16)
        /// Device-selective: the source-id with the low `functionMask` bits of
        /// the function number ignored (FM, spec table 18).
        case device(domainID: UInt16, sourceID: SourceID, functionMask: UInt8)
    }

    public enum IOTLBScope: Sendable, Equatable {
        case global
        case domain(UInt16)
        /// Page-selective-within-domain: 2^addressMask pages from `address`.
        case pages(domainID: UInt16, address: UInt64, addressMask: UInt8, invalidationHint: Bool)
    }

    /// Why a descriptor was refused.
    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public var low: UInt64
        public var high: UInt64
        public var reason: String
        public var description: String {
            "invalid descriptor 0x\(hexDigits(high, width: 16))\(hexDigits(low, width: 16)): \(reason)"
        }
    }

    /// Decodes one descriptor. `caps` bounds the address mask (CAP.MAMV).
    public static func decode(low: UInt64, high: UInt64, caps: IOMMUCapabilities) -> Result<InvalidationDescriptor, DecodeError> {
        func refuse(_ why: String) -> Result<InvalidationDescriptor, DecodeError> {
            .failure(DecodeError(low: low, high: high, reason: why))
        }
        // Bits 11:9 extend the type field in VT-d 3.x; legacy descriptors keep them 0.
        let type = (low & 0xf) | ((low >> 5) & 0x70)
        switch type {
        case 1:
            if low & 0xfffc_0000_0000_ffc0 != 0 || high != 0 {
                return refuse("context-cache descriptor has reserved bits set")
            }
            let did = UInt16((low >> 16) & 0xffff)
            switch (low >> 4) & 3 {
            case 1: return .success(.contextCache(.global))
            case 2: return .success(.contextCache(.domain(did)))
            case 3:
                let sid = SourceID(rawValue: UInt16((low >> 32) & 0xffff))
                return .success(.contextCache(.device(domainID: did, sourceID: sid, functionMask: UInt8((low >> 48) & 3))))
            default: return refuse("context-cache descriptor has granularity 0, which is reserved")
            }
        case 2:
            if low & 0xffff_ffff_0000_ff00 != 0 || high & 0xf80 != 0 {
                return refuse("IOTLB descriptor has reserved bits set")
            }
            let did = UInt16((low >> 16) & 0xffff)
            let dr = low & (1 << 7) != 0
            let dw = low & (1 << 6) != 0
            switch (low >> 4) & 3 {
            case 1: return .success(.iotlb(.global, drainReads: dr, drainWrites: dw))
            case 2: return .success(.iotlb(.domain(did), drainReads: dr, drainWrites: dw))
            case 3:
                let am = UInt8(high & 0x3f)
                if Int(am) > caps.maxAddressMask {
                    return refuse("IOTLB descriptor has address mask \(am), above CAP.MAMV \(caps.maxAddressMask)")
                }
                // 2^AM pages of 4 KiB: AM 52 is all of the 64-bit space, and
                // above that the range would wrap past 2^64 (a VMM may
                // advertise a MAMV up to 63).
                if am > 52 {
                    return refuse("IOTLB descriptor has address mask \(am): 2^\(am) pages of 4 KiB wrap past 2^64 (at most 52)")
                }
                let address = high & ~0xfff
                // Spec 6.5.2.3: ADDR must be aligned to 2^AM pages; hardware
                // ignores the low AM bits, and so do we.
                let aligned = am == 52 ? 0 : address & ~((UInt64(1) << (UInt64(am) + 12)) - 1)
                return .success(.iotlb(.pages(domainID: did, address: aligned, addressMask: am,
                                              invalidationHint: high & (1 << 6) != 0),
                                       drainReads: dr, drainWrites: dw))
            default: return refuse("IOTLB descriptor has granularity 0, which is reserved")
            }
        case 3:
            if low & 0xffff_0000_ffe0_fff0 != 0 || high & 0xffe != 0 {
                return refuse("device-TLB descriptor has reserved bits set")
            }
            return .success(.deviceTLB(sourceID: SourceID(rawValue: UInt16((low >> 32) & 0xffff)),
                                       address: high & ~0xfff, sizeBit: high & 1 != 0))
        case 4:
            if low & 0xffff_0000_07ff_ffe0 != 0 || high != 0 {
                return refuse("interrupt-entry-cache descriptor has reserved bits set")
            }
            return .success(.interruptEntryCache(global: low & 0x10 == 0, index: UInt16((low >> 32) & 0xffff),
                                                 indexMask: UInt8((low >> 27) & 0x1f)))
        case 5:
            if low & 0xffff_ff80 != 0 || high & 3 != 0 {
                return refuse("invalidation-wait descriptor has reserved bits set")
            }
            return .success(.wait(statusWrite: low & (1 << 5) != 0, interrupt: low & (1 << 4) != 0,
                                  fence: low & (1 << 6) != 0, statusData: UInt32(low >> 32),
                                  statusAddress: high & ~3))
        default:
            return refuse("descriptor type \(type) is not supported in legacy mode (1-5 are)")
        }
    }

    /// The IOVA range [start, end) of a page-selective invalidation of 2^AM
    /// pages at `address` (aligned to them); `end` saturates at 2^64 - 1
    /// when the range reaches the top of the 64-bit space (AM 52).
    public static func pageRange(address: UInt64, addressMask: UInt8) -> (UInt64, UInt64) {
        let shift = UInt64(addressMask) + 12
        guard shift < 64 else { return (0, .max) }
        let span = UInt64(1) << shift
        let start = address & ~(span - 1)
        let (end, overflow) = start.addingReportingOverflow(span)
        return (start, overflow ? .max : end)
    }

    /// Encodes the descriptor as the guest driver would write it.
    public var encoded: (low: UInt64, high: UInt64) {
        switch self {
        case let .contextCache(scope):
            switch scope {
            case .global: return (1 | 1 << 4, 0)
            case let .domain(did): return (1 | 2 << 4 | UInt64(did) << 16, 0)
            case let .device(did, sid, fm):
                return (1 | 3 << 4 | UInt64(did) << 16 | UInt64(sid.rawValue) << 32 | UInt64(fm & 3) << 48, 0)
            }
        case let .iotlb(scope, dr, dw):
            let drain = (dr ? UInt64(1) << 7 : 0) | (dw ? UInt64(1) << 6 : 0)
            switch scope {
            case .global: return (2 | 1 << 4 | drain, 0)
            case let .domain(did): return (2 | 2 << 4 | drain | UInt64(did) << 16, 0)
            case let .pages(did, address, am, ih):
                return (2 | 3 << 4 | drain | UInt64(did) << 16,
                        (address & ~0xfff) | (ih ? 1 << 6 : 0) | UInt64(am & 0x3f))
            }
        case let .deviceTLB(sid, address, sizeBit):
            return (3 | UInt64(sid.rawValue) << 32, (address & ~0xfff) | (sizeBit ? 1 : 0))
        case let .interruptEntryCache(global, index, mask):
            return (4 | (global ? 0 : 0x10) | UInt64(mask & 0x1f) << 27 | UInt64(index) << 32, 0)
        case let .wait(sw, interrupt, fence, data, address):
            var low: UInt64 = 5 | UInt64(data) << 32
            if interrupt { low |= 1 << 4 }
            if sw { low |= 1 << 5 }
            if fence { low |= 1 << 6 }
            return (low, address & ~3)
        }
    }
}
