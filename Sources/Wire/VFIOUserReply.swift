/// A successful reply's payload, per command (vfio-user.rst, each command's
/// "Reply"). A failed command's reply is the header alone, with the error
/// flag and an errno: `VFIOUserReplyMessage.error`.
public enum VFIOUserReply: Sendable, Equatable {
    case version(VFIOUserVersion)
    /// No payload.
    case dmaMap
    /// The unmapped entry, echoed.
    case dmaUnmap(VFIOUserDMAUnmap)
    case deviceGetInfo(VFIOUserDeviceInfo)
    /// The region info and the capability chain after it (raw: its layout is
    /// Linux's vfio_info_cap_header chain, which `capabilityOffset` indexes).
    case deviceGetRegionInfo(VFIOUserRegionInfo, capabilities: [UInt8])
    case deviceGetIRQInfo(VFIOUserIRQInfo)
    /// No payload.
    case deviceSetIRQs
    case regionRead(VFIOUserRegionAccess, data: [UInt8])
    case regionWrite(VFIOUserRegionAccess)
    /// No payload.
    case deviceReset

    public var command: VFIOUserCommand {
        switch self {
        case .version: .version
        case .dmaMap: .dmaMap
        case .dmaUnmap: .dmaUnmap
        case .deviceGetInfo: .deviceGetInfo
        case .deviceGetRegionInfo: .deviceGetRegionInfo
        case .deviceGetIRQInfo: .deviceGetIRQInfo
        case .deviceSetIRQs: .deviceSetIRQs
        case .regionRead: .regionRead
        case .regionWrite: .regionWrite
        case .deviceReset: .deviceReset
        }
    }
}

/// A decoded reply: its header, and either the payload or the errno.
public struct VFIOUserReplyMessage: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case success(VFIOUserReply)
        /// The error flag was set; the errno may be 0 (the spec allows it).
        case error(errno: UInt32)
    }

    public var header: VFIOUserHeader
    public var outcome: Outcome

    public init(header: VFIOUserHeader, outcome: Outcome) {
        self.header = header
        self.outcome = outcome
    }
}
