import CVFIO
import XCTest

/// The exported constants must equal the kernel ABI. The expected values were
/// checked by compiling a C program against /usr/include/linux/vfio.h on the
/// development machine; the request numbers are _IO(';', 100 + n), i.e.
/// 0x3B00 + 100 + n, with no size or direction bits.
final class GoldenConstantsTests: XCTestCase {
    func testRequestNumbersMatchTheKernelABI() {
        XCTAssertEqual(cvfio_VFIO_GET_API_VERSION, 0x3B64)
        XCTAssertEqual(cvfio_VFIO_CHECK_EXTENSION, 0x3B65)
        XCTAssertEqual(cvfio_VFIO_SET_IOMMU, 0x3B66)
        XCTAssertEqual(cvfio_VFIO_GROUP_GET_STATUS, 0x3B67)
        XCTAssertEqual(cvfio_VFIO_GROUP_SET_CONTAINER, 0x3B68)
        XCTAssertEqual(cvfio_VFIO_GROUP_UNSET_CONTAINER, 0x3B69)
        XCTAssertEqual(cvfio_VFIO_GROUP_GET_DEVICE_FD, 0x3B6A)
        XCTAssertEqual(cvfio_VFIO_DEVICE_GET_INFO, 0x3B6B)
        XCTAssertEqual(cvfio_VFIO_DEVICE_GET_REGION_INFO, 0x3B6C)
        XCTAssertEqual(cvfio_VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D)
        XCTAssertEqual(cvfio_VFIO_DEVICE_SET_IRQS, 0x3B6E)
        XCTAssertEqual(cvfio_VFIO_DEVICE_RESET, 0x3B6F)
        XCTAssertEqual(cvfio_VFIO_IOMMU_GET_INFO, 0x3B70)
        XCTAssertEqual(cvfio_VFIO_IOMMU_MAP_DMA, 0x3B71)
        XCTAssertEqual(cvfio_VFIO_IOMMU_UNMAP_DMA, 0x3B72)
    }

    func testRequestNumbersFollowTheIOEncoding() {
        // _IO(type, nr) on x86-64 and arm64: (type << 8) | nr.
        func io(_ n: UInt) -> UInt { (UInt(UInt8(ascii: ";")) << 8) | (100 + n) }
        XCTAssertEqual(cvfio_VFIO_GET_API_VERSION, io(0))
        XCTAssertEqual(cvfio_VFIO_DEVICE_RESET, io(11))
        XCTAssertEqual(cvfio_VFIO_IOMMU_UNMAP_DMA, io(14))
    }

    func testVersionsTypesAndExtensions() {
        XCTAssertEqual(cvfio_VFIO_API_VERSION, 0)
        XCTAssertEqual(cvfio_VFIO_TYPE1_IOMMU, 1)
        XCTAssertEqual(cvfio_VFIO_TYPE1v2_IOMMU, 3)
        XCTAssertEqual(cvfio_VFIO_UNMAP_ALL, 9)
    }

    func testFlags() {
        XCTAssertEqual(cvfio_VFIO_GROUP_FLAGS_VIABLE, 1 << 0)
        XCTAssertEqual(cvfio_VFIO_GROUP_FLAGS_CONTAINER_SET, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_DMA_MAP_FLAG_READ, 1 << 0)
        XCTAssertEqual(cvfio_VFIO_DMA_MAP_FLAG_WRITE, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_DMA_UNMAP_FLAG_ALL, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_IOMMU_INFO_PGSIZES, 1 << 0)
        XCTAssertEqual(cvfio_VFIO_IOMMU_INFO_CAPS, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1)
        XCTAssertEqual(cvfio_VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 3)
        XCTAssertEqual(cvfio_VFIO_DEVICE_FLAGS_RESET, 1 << 0)
        XCTAssertEqual(cvfio_VFIO_DEVICE_FLAGS_PCI, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_REGION_INFO_FLAG_READ, 1 << 0)
        XCTAssertEqual(cvfio_VFIO_REGION_INFO_FLAG_WRITE, 1 << 1)
        XCTAssertEqual(cvfio_VFIO_REGION_INFO_FLAG_MMAP, 1 << 2)
        XCTAssertEqual(cvfio_VFIO_PCI_BAR0_REGION_INDEX, 0)
        XCTAssertEqual(cvfio_VFIO_PCI_CONFIG_REGION_INDEX, 7)
    }

    func testStructSizes() {
        XCTAssertEqual(cvfio_sizeof_vfio_iommu_type1_dma_map, 32)
        XCTAssertEqual(cvfio_sizeof_vfio_iommu_type1_dma_unmap, 24)
        // 4 + 4 + 8 + 4, padded to the u64 alignment.
        XCTAssertEqual(cvfio_sizeof_vfio_iommu_type1_info, 24)
        XCTAssertEqual(cvfio_sizeof_vfio_group_status, 8)
        XCTAssertEqual(cvfio_sizeof_vfio_device_info, 20)
        XCTAssertEqual(cvfio_sizeof_vfio_region_info, 32)
        XCTAssertEqual(cvfio_sizeof_vfio_irq_info, 16)
        XCTAssertEqual(cvfio_sizeof_vfio_irq_set, 20)
    }

    func testSwiftSeesTheSameStructLayoutsAsC() {
        // The VFIO layer fills these structs from Swift; their imported
        // layout must match what the C compiler computed.
        XCTAssertEqual(UInt(MemoryLayout<vfio_iommu_type1_dma_map>.size), cvfio_sizeof_vfio_iommu_type1_dma_map)
        XCTAssertEqual(UInt(MemoryLayout<vfio_iommu_type1_dma_unmap>.size), cvfio_sizeof_vfio_iommu_type1_dma_unmap)
        XCTAssertEqual(UInt(MemoryLayout<vfio_iommu_type1_info>.size), cvfio_sizeof_vfio_iommu_type1_info)
        XCTAssertEqual(UInt(MemoryLayout<vfio_group_status>.size), cvfio_sizeof_vfio_group_status)
        XCTAssertEqual(UInt(MemoryLayout<vfio_device_info>.size), cvfio_sizeof_vfio_device_info)
        XCTAssertEqual(UInt(MemoryLayout<vfio_region_info>.size), cvfio_sizeof_vfio_region_info)
        XCTAssertEqual(MemoryLayout<vfio_iommu_type1_dma_map>.offset(of: \.iova), 16)
        XCTAssertEqual(MemoryLayout<vfio_iommu_type1_dma_unmap>.offset(of: \.size), 16)
        XCTAssertEqual(MemoryLayout<vfio_region_info>.offset(of: \.offset), 24)
    }

    func testCapabilityLayouts() {
        XCTAssertEqual(cvfio_offsetof_vfio_iommu_type1_info_flags, 4)
        XCTAssertEqual(cvfio_offsetof_vfio_iommu_type1_info_iova_pgsizes, 8)
        XCTAssertEqual(cvfio_offsetof_vfio_iommu_type1_info_cap_offset, 16)
        XCTAssertEqual(cvfio_sizeof_vfio_info_cap_header, 8)
        XCTAssertEqual(cvfio_offsetof_vfio_info_cap_header_version, 2)
        XCTAssertEqual(cvfio_offsetof_vfio_info_cap_header_next, 4)
        XCTAssertEqual(cvfio_offsetof_cap_iova_range_nr_iovas, 8)
        XCTAssertEqual(cvfio_offsetof_cap_iova_range_iova_ranges, 16)
        XCTAssertEqual(cvfio_sizeof_vfio_iova_range, 16)
        XCTAssertEqual(cvfio_offsetof_cap_dma_avail_avail, 8)
        XCTAssertEqual(cvfio_sizeof_cap_dma_avail, 12)
    }
}
