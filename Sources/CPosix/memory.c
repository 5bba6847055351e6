// Memory shared through descriptors: memfd_create(2) for anonymous guest RAM
// that can be passed to another process, and mmap(2)/munmap(2) to see it.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <sys/mman.h>

const unsigned cposix_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned cposix_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;

int cposix_memfd_create(const char *name, unsigned flags) {
    int fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}

int cposix_mmap_shared(int fd, size_t length, int64_t offset, int writable, void **address) {
    *address = NULL;
    if (offset < 0) {
        return -EINVAL;
    }
    int protection = writable ? (PROT_READ | PROT_WRITE) : PROT_READ;
    void *mapped = mmap(NULL, length, protection, MAP_SHARED, fd, (off_t)offset);
    if (mapped == MAP_FAILED) {
        return -errno;
    }
    *address = mapped;
    return 0;
}

int cposix_munmap(void *address, size_t length) {
    return munmap(address, length) < 0 ? -errno : 0;
}
