import CVFIO
import VTd

extension DMAPermission {
    /// The `flags` of a `struct vfio_iommu_type1_dma_map`:
    /// VFIO_DMA_MAP_FLAG_READ for `.read`, VFIO_DMA_MAP_FLAG_WRITE for
    /// `.write` (<linux/vfio.h>). Built bit by bit from the header's values,
    /// not by assuming they equal the VT-d bits (they do; a golden test
    /// checks both).
    public var mapDMAFlags: UInt32 {
        var flags: UInt32 = 0
        if contains(.read) { flags |= UInt32(cvfio_VFIO_DMA_MAP_FLAG_READ) }
        if contains(.write) { flags |= UInt32(cvfio_VFIO_DMA_MAP_FLAG_WRITE) }
        return flags
    }
}
