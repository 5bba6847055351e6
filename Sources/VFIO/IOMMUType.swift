import CVFIO

/// The type1 IOMMU model a container runs.
public enum IOMMUType: Sendable, Equatable, CustomStringConvertible {
    /// VFIO_TYPE1_IOMMU: the original; unmap may split mappings.
    case type1
    /// VFIO_TYPE1v2_IOMMU: unmap must cover whole mappings, and the kernel
    /// reports reserved IOVA ranges. Preferred when available.
    case type1v2

    /// The value for VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU.
    public var rawValue: UInt {
        switch self {
        case .type1: cvfio_VFIO_TYPE1_IOMMU
        case .type1v2: cvfio_VFIO_TYPE1v2_IOMMU
        }
    }

    public var description: String {
        switch self {
        case .type1: "type1"
        case .type1v2: "type1v2"
        }
    }
}
