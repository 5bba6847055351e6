/// A vfio-user command the codec decodes, with its payload. Descriptors that
/// came with the message (DMA_MAP's region fd, SET_IRQS's eventfds) are not
/// part of it: the framing layer hands them over beside the message.
public enum VFIOUserRequest: Sendable, Equatable {
    case version(VFIOUserVersion)
    case dmaMap(VFIOUserDMAMap)
    case dmaUnmap(VFIOUserDMAUnmap)
    case deviceGetInfo(VFIOUserDeviceInfo)
    case deviceGetRegionInfo(VFIOUserRegionInfo)
    case deviceGetIRQInfo(VFIOUserIRQInfo)
    case deviceSetIRQs(VFIOUserIRQSet)
    case regionRead(VFIOUserRegionAccess)
    case regionWrite(VFIOUserRegionAccess, data: [UInt8])
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

/// A decoded command and the header it came in (whose message ID the reply echoes).
public struct VFIOUserCommandMessage: Sendable, Equatable {
    public var header: VFIOUserHeader
    public var request: VFIOUserRequest

    public init(header: VFIOUserHeader, request: VFIOUserRequest) {
        self.header = header
        self.request = request
    }
}
