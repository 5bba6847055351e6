// Who is on the other end of a Unix socket: SO_PEERCRED and SO_PEERGROUPS.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>

#ifndef SO_PEERGROUPS
// Linux 4.13 added it; the value is the same on every architecture that has it
// (include/uapi/asm-generic/socket.h).
#define SO_PEERGROUPS 59
#endif

int cposix_peer_credentials(int fd, int *pid, unsigned *uid, unsigned *gid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) {
        return -errno;
    }
    if (length != sizeof(credentials)) {
        return -EINVAL;
    }
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int cposix_peer_groups(int fd, gid_t *groups, int capacity, int *count) {
    *count = 0;
    if (capacity < 0) {
        return -EINVAL;
    }
    socklen_t length = (socklen_t)((size_t)capacity * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &length) < 0) {
        int failure = errno;
        // The kernel writes back the size it needs when the buffer is too
        // small (net/core/sock.c, sk_getsockopt).
        if (failure == ERANGE) {
            *count = (int)(length / sizeof(gid_t));
        }
        return -failure;
    }
    *count = (int)(length / sizeof(gid_t));
    return 0;
}
