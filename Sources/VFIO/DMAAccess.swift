import CVFIO

/// Device access rights of one DMA mapping: VFIO_DMA_MAP_FLAG_READ/WRITE.
/// (The device reads guest memory on `read`, writes it on `write`.)
public struct DMAAccess: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = DMAAccess(rawValue: UInt32(cvfio_VFIO_DMA_MAP_FLAG_READ))
    public static let write = DMAAccess(rawValue: UInt32(cvfio_VFIO_DMA_MAP_FLAG_WRITE))
    public static let readWrite: DMAAccess = [.read, .write]
}
