// CVFIO: the parts of <linux/vfio.h> and the libc system-call surface that
// Swift cannot use directly.
//
// Why this exists:
// - The ioctl request numbers are function-like macros (_IO(';', 100 + n)),
//   which the Clang importer drops. We export each one as a constant computed
//   from the real macro, so the numbers come from the installed kernel
//   header and never from a hand-typed table.
// - ioctl(2) is variadic, which Swift cannot call.
// - Every wrapper returns the result or -errno (never -1 plus a global errno),
//   so Swift does not have to read errno after the fact. None of them retries
//   EINTR: that policy lives in exactly one Swift helper (Posix's
//   retryingEINTR). Calls that are not VFIO's (open, close, pread, readlink,
//   getrlimit) are in the CPosix shim.
//
// Exported names carry a `cvfio_` prefix because Swift does import the
// header's plain integer macros (VFIO_API_VERSION, VFIO_TYPE1_IOMMU, ...),
// and the two spellings must not collide.
#ifndef CVFIO_H
#define CVFIO_H

#include <stddef.h>
#include <stdint.h>
#include <linux/vfio.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: ioctl request numbers (include/uapi/linux/vfio.h, VFIO_TYPE ';', VFIO_BASE 100)

extern const unsigned long cvfio_VFIO_GET_API_VERSION;
extern const unsigned long cvfio_VFIO_CHECK_EXTENSION;
extern const unsigned long cvfio_VFIO_SET_IOMMU;
extern const unsigned long cvfio_VFIO_GROUP_GET_STATUS;
extern const unsigned long cvfio_VFIO_GROUP_SET_CONTAINER;
extern const unsigned long cvfio_VFIO_GROUP_UNSET_CONTAINER;
extern const unsigned long cvfio_VFIO_GROUP_GET_DEVICE_FD;
extern const unsigned long cvfio_VFIO_DEVICE_GET_INFO;
extern const unsigned long cvfio_VFIO_DEVICE_GET_REGION_INFO;
extern const unsigned long cvfio_VFIO_DEVICE_RESET;
extern const unsigned long cvfio_VFIO_DEVICE_GET_IRQ_INFO;
extern const unsigned long cvfio_VFIO_DEVICE_SET_IRQS;
extern const unsigned long cvfio_VFIO_IOMMU_GET_INFO;
extern const unsigned long cvfio_VFIO_IOMMU_MAP_DMA;
extern const unsigned long cvfio_VFIO_IOMMU_UNMAP_DMA;

// MARK: API version, IOMMU types and extensions

extern const unsigned long cvfio_VFIO_API_VERSION;
extern const unsigned long cvfio_VFIO_TYPE1_IOMMU;
extern const unsigned long cvfio_VFIO_TYPE1v2_IOMMU;
/// Extension id for VFIO_CHECK_EXTENSION: type1 understands
/// VFIO_DMA_UNMAP_FLAG_ALL (Linux 5.12+).
extern const unsigned long cvfio_VFIO_UNMAP_ALL;

// MARK: flags

extern const unsigned long cvfio_VFIO_GROUP_FLAGS_VIABLE;
extern const unsigned long cvfio_VFIO_GROUP_FLAGS_CONTAINER_SET;
extern const unsigned long cvfio_VFIO_DMA_MAP_FLAG_READ;
extern const unsigned long cvfio_VFIO_DMA_MAP_FLAG_WRITE;
extern const unsigned long cvfio_VFIO_DMA_UNMAP_FLAG_ALL;
extern const unsigned long cvfio_VFIO_IOMMU_INFO_PGSIZES;
extern const unsigned long cvfio_VFIO_IOMMU_INFO_CAPS;
extern const unsigned long cvfio_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
extern const unsigned long cvfio_VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
extern const unsigned long cvfio_VFIO_DEVICE_FLAGS_RESET;
extern const unsigned long cvfio_VFIO_DEVICE_FLAGS_PCI;
extern const unsigned long cvfio_VFIO_REGION_INFO_FLAG_READ;
extern const unsigned long cvfio_VFIO_REGION_INFO_FLAG_WRITE;
extern const unsigned long cvfio_VFIO_REGION_INFO_FLAG_MMAP;
extern const unsigned long cvfio_VFIO_REGION_INFO_FLAG_CAPS;
extern const unsigned long cvfio_VFIO_PCI_BAR0_REGION_INDEX;
extern const unsigned long cvfio_VFIO_PCI_CONFIG_REGION_INDEX;

// MARK: struct layouts (for argsz and for golden tests)

extern const unsigned long cvfio_sizeof_vfio_iommu_type1_dma_map;
extern const unsigned long cvfio_sizeof_vfio_iommu_type1_dma_unmap;
extern const unsigned long cvfio_sizeof_vfio_iommu_type1_info;
extern const unsigned long cvfio_sizeof_vfio_group_status;
extern const unsigned long cvfio_sizeof_vfio_device_info;
extern const unsigned long cvfio_sizeof_vfio_region_info;
extern const unsigned long cvfio_sizeof_vfio_irq_info;
extern const unsigned long cvfio_sizeof_vfio_irq_set;

// Layout of the VFIO_IOMMU_GET_INFO reply and its capability chain. The chain
// is parsed in Swift from raw bytes; these say where each field lives.
extern const unsigned long cvfio_offsetof_vfio_iommu_type1_info_flags;
extern const unsigned long cvfio_offsetof_vfio_iommu_type1_info_iova_pgsizes;
extern const unsigned long cvfio_offsetof_vfio_iommu_type1_info_cap_offset;
extern const unsigned long cvfio_sizeof_vfio_info_cap_header;
extern const unsigned long cvfio_offsetof_vfio_info_cap_header_version;
extern const unsigned long cvfio_offsetof_vfio_info_cap_header_next;
extern const unsigned long cvfio_offsetof_cap_iova_range_nr_iovas;
extern const unsigned long cvfio_offsetof_cap_iova_range_iova_ranges;
extern const unsigned long cvfio_sizeof_vfio_iova_range;
extern const unsigned long cvfio_offsetof_cap_dma_avail_avail;
extern const unsigned long cvfio_sizeof_cap_dma_avail;

// MARK: system calls returning the result or -errno (no EINTR retry here)

/// ioctl(fd, request, arg): the ioctl's non-negative result, or -errno.
long cvfio_ioctl(int fd, unsigned long request, void *arg);
/// ioctl(fd, request, value) for requests whose argument is an integer by
/// value (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU): the result, or -errno.
long cvfio_ioctl_int(int fd, unsigned long request, unsigned long value);

#ifdef __cplusplus
}
#endif

#endif // CVFIO_H
