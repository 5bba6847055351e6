// memfd_create(2): anonymous memory with a descriptor, for guest RAM that is
// shared with another process by passing the descriptor.

#define _GNU_SOURCE
#include "CSocket.h"

#include <errno.h>
#include <sys/mman.h>

const unsigned csocket_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned csocket_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;

int csocket_memfd_create(const char *name, unsigned flags) {
    int fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}
