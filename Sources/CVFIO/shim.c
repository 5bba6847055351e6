// Definitions for CVFIO.h. Every constant is computed here from the real
// macro or struct in the installed <linux/vfio.h>, so the values Swift uses
// are exactly what a C program built on this machine would use.

#include "CVFIO.h"

#include <errno.h>
#include <sys/ioctl.h>

// MARK: request numbers

const unsigned long cvfio_VFIO_GET_API_VERSION = VFIO_GET_API_VERSION;
const unsigned long cvfio_VFIO_CHECK_EXTENSION = VFIO_CHECK_EXTENSION;
const unsigned long cvfio_VFIO_SET_IOMMU = VFIO_SET_IOMMU;
const unsigned long cvfio_VFIO_GROUP_GET_STATUS = VFIO_GROUP_GET_STATUS;
const unsigned long cvfio_VFIO_GROUP_SET_CONTAINER = VFIO_GROUP_SET_CONTAINER;
const unsigned long cvfio_VFIO_GROUP_UNSET_CONTAINER = VFIO_GROUP_UNSET_CONTAINER;
const unsigned long cvfio_VFIO_GROUP_GET_DEVICE_FD = VFIO_GROUP_GET_DEVICE_FD;
const unsigned long cvfio_VFIO_DEVICE_GET_INFO = VFIO_DEVICE_GET_INFO;
const unsigned long cvfio_VFIO_DEVICE_GET_REGION_INFO = VFIO_DEVICE_GET_REGION_INFO;
const unsigned long cvfio_VFIO_DEVICE_GET_IRQ_INFO = VFIO_DEVICE_GET_IRQ_INFO;
const unsigned long cvfio_VFIO_DEVICE_SET_IRQS = VFIO_DEVICE_SET_IRQS;
const unsigned long cvfio_VFIO_DEVICE_RESET = VFIO_DEVICE_RESET;
const unsigned long cvfio_VFIO_IOMMU_GET_INFO = VFIO_IOMMU_GET_INFO;
const unsigned long cvfio_VFIO_IOMMU_MAP_DMA = VFIO_IOMMU_MAP_DMA;
const unsigned long cvfio_VFIO_IOMMU_UNMAP_DMA = VFIO_IOMMU_UNMAP_DMA;

// MARK: versions, types, extensions

const unsigned long cvfio_VFIO_API_VERSION = VFIO_API_VERSION;
const unsigned long cvfio_VFIO_TYPE1_IOMMU = VFIO_TYPE1_IOMMU;
const unsigned long cvfio_VFIO_TYPE1v2_IOMMU = VFIO_TYPE1v2_IOMMU;

#ifdef VFIO_UNMAP_ALL
const unsigned long cvfio_VFIO_UNMAP_ALL = VFIO_UNMAP_ALL;
#else
// Headers older than Linux 5.12 lack this extension id. The kernel's value is
// 9. Asking an older kernel about an id it does not know simply answers 0
// from VFIO_CHECK_EXTENSION, so carrying the number here is harmless.
const unsigned long cvfio_VFIO_UNMAP_ALL = 9;
#endif

// MARK: flags

const unsigned long cvfio_VFIO_GROUP_FLAGS_VIABLE = VFIO_GROUP_FLAGS_VIABLE;
const unsigned long cvfio_VFIO_GROUP_FLAGS_CONTAINER_SET = VFIO_GROUP_FLAGS_CONTAINER_SET;
const unsigned long cvfio_VFIO_DMA_MAP_FLAG_READ = VFIO_DMA_MAP_FLAG_READ;
const unsigned long cvfio_VFIO_DMA_MAP_FLAG_WRITE = VFIO_DMA_MAP_FLAG_WRITE;

#ifdef VFIO_DMA_UNMAP_FLAG_ALL
const unsigned long cvfio_VFIO_DMA_UNMAP_FLAG_ALL = VFIO_DMA_UNMAP_FLAG_ALL;
#else
// Linux 5.12 added bit 1 of vfio_iommu_type1_dma_unmap.flags: unmap every
// mapping, with iova and size both 0. Older kernels reject unknown flags
// with EINVAL; the Swift side only sends it after VFIO_CHECK_EXTENSION
// reports VFIO_UNMAP_ALL, so the fallback value is never sent to them.
const unsigned long cvfio_VFIO_DMA_UNMAP_FLAG_ALL = 1UL << 1;
#endif

const unsigned long cvfio_VFIO_IOMMU_INFO_PGSIZES = VFIO_IOMMU_INFO_PGSIZES;
const unsigned long cvfio_VFIO_IOMMU_INFO_CAPS = VFIO_IOMMU_INFO_CAPS;
const unsigned long cvfio_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;

#ifdef VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
const unsigned long cvfio_VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
#else
// Linux 5.10 added the DMA-available capability (id 3): a header followed by
// a __u32 count. Older kernels never emit it, so the parser just never sees it.
const unsigned long cvfio_VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
#endif

const unsigned long cvfio_VFIO_DEVICE_FLAGS_RESET = VFIO_DEVICE_FLAGS_RESET;
const unsigned long cvfio_VFIO_DEVICE_FLAGS_PCI = VFIO_DEVICE_FLAGS_PCI;
const unsigned long cvfio_VFIO_REGION_INFO_FLAG_READ = VFIO_REGION_INFO_FLAG_READ;
const unsigned long cvfio_VFIO_REGION_INFO_FLAG_WRITE = VFIO_REGION_INFO_FLAG_WRITE;
const unsigned long cvfio_VFIO_REGION_INFO_FLAG_MMAP = VFIO_REGION_INFO_FLAG_MMAP;
const unsigned long cvfio_VFIO_REGION_INFO_FLAG_CAPS = VFIO_REGION_INFO_FLAG_CAPS;
const unsigned long cvfio_VFIO_PCI_BAR0_REGION_INDEX = VFIO_PCI_BAR0_REGION_INDEX;
const unsigned long cvfio_VFIO_PCI_CONFIG_REGION_INDEX = VFIO_PCI_CONFIG_REGION_INDEX;

// MARK: layouts

const unsigned long cvfio_sizeof_vfio_iommu_type1_dma_map = sizeof(struct vfio_iommu_type1_dma_map);
const unsigned long cvfio_sizeof_vfio_iommu_type1_dma_unmap = sizeof(struct vfio_iommu_type1_dma_unmap);
const unsigned long cvfio_sizeof_vfio_iommu_type1_info = sizeof(struct vfio_iommu_type1_info);
const unsigned long cvfio_sizeof_vfio_group_status = sizeof(struct vfio_group_status);
const unsigned long cvfio_sizeof_vfio_device_info = sizeof(struct vfio_device_info);
const unsigned long cvfio_sizeof_vfio_region_info = sizeof(struct vfio_region_info);
const unsigned long cvfio_sizeof_vfio_irq_info = sizeof(struct vfio_irq_info);
const unsigned long cvfio_sizeof_vfio_irq_set = sizeof(struct vfio_irq_set);

const unsigned long cvfio_offsetof_vfio_iommu_type1_info_flags =
    offsetof(struct vfio_iommu_type1_info, flags);
const unsigned long cvfio_offsetof_vfio_iommu_type1_info_iova_pgsizes =
    offsetof(struct vfio_iommu_type1_info, iova_pgsizes);
const unsigned long cvfio_offsetof_vfio_iommu_type1_info_cap_offset =
    offsetof(struct vfio_iommu_type1_info, cap_offset);
const unsigned long cvfio_sizeof_vfio_info_cap_header = sizeof(struct vfio_info_cap_header);
const unsigned long cvfio_offsetof_vfio_info_cap_header_version =
    offsetof(struct vfio_info_cap_header, version);
const unsigned long cvfio_offsetof_vfio_info_cap_header_next =
    offsetof(struct vfio_info_cap_header, next);
const unsigned long cvfio_offsetof_cap_iova_range_nr_iovas =
    offsetof(struct vfio_iommu_type1_info_cap_iova_range, nr_iovas);
const unsigned long cvfio_offsetof_cap_iova_range_iova_ranges =
    offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges);
const unsigned long cvfio_sizeof_vfio_iova_range = sizeof(struct vfio_iova_range);

#ifdef VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
const unsigned long cvfio_offsetof_cap_dma_avail_avail =
    offsetof(struct vfio_iommu_type1_info_dma_avail, avail);
const unsigned long cvfio_sizeof_cap_dma_avail = sizeof(struct vfio_iommu_type1_info_dma_avail);
#else
// Same layout as the 5.10 header: an 8-byte cap header, then __u32 avail.
const unsigned long cvfio_offsetof_cap_dma_avail_avail = 8;
const unsigned long cvfio_sizeof_cap_dma_avail = 12;
#endif

// MARK: system calls

long cvfio_ioctl(int fd, unsigned long request, void *arg) {
    int result = ioctl(fd, request, arg);
    return result < 0 ? -(long)errno : (long)result;
}

long cvfio_ioctl_int(int fd, unsigned long request, unsigned long value) {
    int result = ioctl(fd, request, value);
    return result < 0 ? -(long)errno : (long)result;
}
