import Glibc
import VTd

/// The registers of QEMU's emulated DMA-remapping unit (at 0xfed90000 on
/// x86 machines), driven as a guest driver does. Register layout and bits:
/// VT-d spec 11.4, "Register Descriptions" (10.4 before revision 3.0).
struct QEMUGuestDMAR {
    let qtest: QTestClient
    let base: UInt64

    static let defaultBase: UInt64 = 0xfed9_0000

    // Offsets.
    static let version: UInt64 = 0x00            // VER_REG
    static let capability: UInt64 = 0x08         // CAP_REG
    static let extendedCapability: UInt64 = 0x10 // ECAP_REG
    static let globalCommand: UInt64 = 0x18      // GCMD_REG (32-bit)
    static let globalStatus: UInt64 = 0x1c       // GSTS_REG (32-bit)
    static let rootTableAddress: UInt64 = 0x20   // RTADDR_REG
    static let faultStatus: UInt64 = 0x34        // FSTS_REG (32-bit)
    static let faultEventControl: UInt64 = 0x38  // FECTL_REG (32-bit)
    static let queueHead: UInt64 = 0x80          // IQH_REG
    static let queueTail: UInt64 = 0x88          // IQT_REG
    static let queueAddress: UInt64 = 0x90       // IQA_REG

    // GCMD command bits; GSTS reports each at the same position.
    static let translationEnable: UInt32 = 1 << 31   // TE / TES
    static let setRootTablePointer: UInt32 = 1 << 30 // SRTP / RTPS
    static let queuedInvalidationEnable: UInt32 = 1 << 26 // QIE / QIES
    /// GSTS bits that GCMD must carry over when it changes another one:
    /// the persistent enables (TE, EAFL, QIE, IRE, CFI), never the one-shot
    /// commands (SRTP, SFL, WBF, SIRTP). The spec's own example mask.
    static let persistentCommands: UInt32 = 0x96ff_ffff

    // FSTS bits.
    static let primaryPendingFault: UInt32 = 1 << 1  // PPF
    static let faultOverflow: UInt32 = 1 << 0        // PFO
    static let queueError: UInt32 = 1 << 4           // IQE

    func capabilities() throws(QTestError) -> IOMMUCapabilities {
        IOMMUCapabilities(cap: try qtest.readq(base + Self.capability), ecap: try qtest.readq(base + Self.extendedCapability))
    }

    func versionText() throws(QTestError) -> String {
        let v = try qtest.readl(base + Self.version)
        return "\((v >> 4) & 0xf).\(v & 0xf)"
    }

    func status() throws(QTestError) -> UInt32 { try qtest.readl(base + Self.globalStatus) }
    func faultStatusBits() throws(QTestError) -> UInt32 { try qtest.readl(base + Self.faultStatus) }

    /// Sets or clears one GCMD command bit, carrying the other persistent
    /// enables over from GSTS, and waits until GSTS shows the change (the
    /// hardware may take time; software polls, spec 11.4, Global Status).
    /// Returns the latency of the GCMD store alone: the time QEMU held the
    /// guest's vCPU in it (a translation switch notifies every IOMMU
    /// listener, e.g. a vfio-user server, before the store completes).
    @discardableResult
    func command(_ bit: UInt32, on: Bool) throws -> Duration {
        let current = try status() & Self.persistentCommands
        let latency = try qtest.writel(base + Self.globalCommand, on ? current | bit : current & ~bit)
        let deadline = ContinuousClock.now + .seconds(5)
        while (try status() & bit != 0) != on {
            guard ContinuousClock.now < deadline else {
                throw SimError("GSTS did not \(on ? "set" : "clear") bit \(bit.trailingZeroBitCount) within 5 s (GSTS \(hex(try status())))")
            }
            usleep(1000)
        }
        return latency
    }

    /// Points the unit at a root table (legacy mode: RTADDR.TTM = 00b) and
    /// latches it with SRTP; RTPS reports it done. SRTP is one-shot, so its
    /// status bit stays set until the next SRTP and is not waited for clear.
    @discardableResult
    func setRootTable(_ gpa: UInt64) throws -> Duration {
        precondition(gpa & 0xfff == 0, "the root table is 4 KiB aligned")
        try qtest.writeq(base + Self.rootTableAddress, gpa)
        return try command(Self.setRootTablePointer, on: true)
    }

    /// Turns DMA remapping on or off (GCMD.TE).
    @discardableResult
    func setTranslation(_ on: Bool) throws -> Duration { try command(Self.translationEnable, on: on) }

    // MARK: fault recording (spec 7.2.1, primary fault logging; registers 11.4, Fault Recording)

    /// One fault recording register, decoded.
    struct FaultRecord: CustomStringConvertible {
        var index: Int
        var sourceID: SourceID
        /// FI: the faulting page's address.
        var page: UInt64
        /// T: 1 for a read request, 0 for a write.
        var isRead: Bool
        /// FR: the fault reason code (spec 7.1.3, e.g. 5 write / 6 read not permitted).
        var reason: UInt8
        var description: String {
            "\(isRead ? "read" : "write") fault, \(sourceID), page \(hex(page)), reason \(hex(reason))"
        }
    }

    /// The fault recording registers: CAP.FRO (bits 33:24) × 16 bytes from
    /// the base, CAP.NFR + 1 (bits 47:40) of them, 128 bits each.
    func faultRecordOffsets(_ caps: IOMMUCapabilities) -> [UInt64] {
        let first = ((caps.cap >> 24) & 0x3ff) * 16
        let count = Int((caps.cap >> 40) & 0xff) + 1
        return (0..<count).map { first + UInt64($0) * 16 }
    }

    /// The records whose F bit (127) is set.
    func faultRecords(_ caps: IOMMUCapabilities) throws(QTestError) -> [FaultRecord] {
        var out: [FaultRecord] = []
        for (i, offset) in faultRecordOffsets(caps).enumerated() {
            let high = try qtest.readq(base + offset + 8)
            guard high >> 63 != 0 else { continue }
            let low = try qtest.readq(base + offset)
            out.append(FaultRecord(index: i, sourceID: SourceID(rawValue: UInt16(high & 0xffff)), page: low & ~0xfff,
                                   isRead: (high >> 62) & 1 != 0, reason: UInt8((high >> 32) & 0xff)))
        }
        return out
    }

    /// Clears every recorded fault (F is write-1-to-clear) and FSTS.PFO, so
    /// that the next fault is recorded rather than collapsed into a pending one.
    func clearFaults(_ caps: IOMMUCapabilities) throws(QTestError) {
        for offset in faultRecordOffsets(caps) {
            if try qtest.readq(base + offset + 8) >> 63 != 0 {
                try qtest.writeq(base + offset + 8, 1 << 63)
            }
        }
        if try faultStatusBits() & Self.faultOverflow != 0 {
            try qtest.writel(base + Self.faultStatus, Self.faultOverflow)
        }
    }
}
