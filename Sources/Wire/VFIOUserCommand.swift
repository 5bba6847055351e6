/// The command numbers of the vfio-user protocol (QEMU docs/interop/vfio-user.rst,
/// "Commands"). The number travels in every header, replies included.
///
/// All assigned numbers are listed so that a refusal can name the command;
/// `VFIOUserCodec` decodes only the ones in `isDecoded` (what QEMU 11.1 sends
/// to a server for a PCI device behind a vIOMMU, per the observed traffic)
/// and refuses the rest as unsupported. 14 is unassigned in the spec.
public enum VFIOUserCommand: UInt16, Sendable, CaseIterable, Equatable {
    case version = 1
    case dmaMap = 2
    case dmaUnmap = 3
    case deviceGetInfo = 4
    case deviceGetRegionInfo = 5
    case deviceGetRegionIOFDs = 6
    case deviceGetIRQInfo = 7
    case deviceSetIRQs = 8
    case regionRead = 9
    case regionWrite = 10
    case dmaRead = 11
    case dmaWrite = 12
    case deviceReset = 13
    case regionWriteMulti = 15
    case deviceFeature = 16
    case migDataRead = 17
    case migDataWrite = 18

    /// The spec's name without its `VFIO_USER_` prefix, as logs and errors show it.
    public var name: String {
        switch self {
        case .version: "VERSION"
        case .dmaMap: "DMA_MAP"
        case .dmaUnmap: "DMA_UNMAP"
        case .deviceGetInfo: "DEVICE_GET_INFO"
        case .deviceGetRegionInfo: "DEVICE_GET_REGION_INFO"
        case .deviceGetRegionIOFDs: "DEVICE_GET_REGION_IO_FDS"
        case .deviceGetIRQInfo: "DEVICE_GET_IRQ_INFO"
        case .deviceSetIRQs: "DEVICE_SET_IRQS"
        case .regionRead: "REGION_READ"
        case .regionWrite: "REGION_WRITE"
        case .dmaRead: "DMA_READ"
        case .dmaWrite: "DMA_WRITE"
        case .deviceReset: "DEVICE_RESET"
        case .regionWriteMulti: "REGION_WRITE_MULTI"
        case .deviceFeature: "DEVICE_FEATURE"
        case .migDataRead: "MIG_DATA_READ"
        case .migDataWrite: "MIG_DATA_WRITE"
        }
    }

    /// Whether `VFIOUserCodec` decodes this command (and its reply).
    public var isDecoded: Bool {
        switch self {
        case .version, .dmaMap, .dmaUnmap, .deviceGetInfo, .deviceGetRegionInfo, .deviceGetIRQInfo,
             .deviceSetIRQs, .regionRead, .regionWrite, .deviceReset:
            true
        case .deviceGetRegionIOFDs, .dmaRead, .dmaWrite, .regionWriteMulti, .deviceFeature,
             .migDataRead, .migDataWrite:
            false
        }
    }

    /// The name of a raw command number, known or not.
    public static func describe(_ raw: UInt16) -> String {
        VFIOUserCommand(rawValue: raw)?.name ?? "command \(raw)"
    }
}
