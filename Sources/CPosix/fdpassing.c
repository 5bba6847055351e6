// sendmsg/recvmsg with SCM_RIGHTS: the part that needs the CMSG_* macros.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

// The kernel's per-message limit (include/net/scm.h); not exported to userspace.
#define CPOSIX_SCM_MAX_FD 253

ssize_t cposix_sendmsg_iov_fds(int fd, const struct iovec *buffers, int count, const int *fds, int nfds) {
    if (nfds < 0 || nfds > CPOSIX_SCM_MAX_FD || count < 0) {
        return -EINVAL;
    }
    struct msghdr message = { .msg_iov = (struct iovec *)buffers, .msg_iovlen = (size_t)count };

    // Sized for the kernel's limit; aligned as cmsghdr requires.
    union {
        char bytes[CMSG_SPACE(sizeof(int) * CPOSIX_SCM_MAX_FD)];
        struct cmsghdr align;
    } control;

    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
    return sent < 0 ? -(ssize_t)errno : sent;
}

// Closes every descriptor carried by SCM_RIGHTS messages in `message`.
static void close_all_received(struct msghdr *message) {
    for (struct cmsghdr *header = CMSG_FIRSTHDR(message); header != NULL;
         header = CMSG_NXTHDR(message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(header);
        for (size_t index = 0; index < count; index++) {
            int received;
            memcpy(&received, data + index * sizeof(int), sizeof(int));
            close(received);
        }
    }
}

ssize_t cposix_recvmsg_fds(int fd, void *buffer, size_t length, int *fds_out, int max_fds, int *nfds_out) {
    *nfds_out = 0;
    if (max_fds < 0) {
        max_fds = 0;
    }
    if (max_fds > CPOSIX_MAX_FDS) {
        max_fds = CPOSIX_MAX_FDS;
    }
    struct iovec iov = { .iov_base = buffer, .iov_len = length };
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };

    union {
        char bytes[CMSG_SPACE(sizeof(int) * CPOSIX_MAX_FDS)];
        struct cmsghdr align;
    } control;

    if (max_fds > 0) {
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
    }
    ssize_t received = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    if (received < 0) {
        return -(ssize_t)errno;
    }
    if (message.msg_flags & MSG_CTRUNC) {
        // Some descriptors never reached us; a partial set is worse than
        // none (the frame they belong to cannot be honoured), so drop all.
        close_all_received(&message);
        return -EMSGSIZE;
    }
    int count = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t in_header = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(header);
        for (size_t index = 0; index < in_header; index++) {
            int descriptor;
            memcpy(&descriptor, data + index * sizeof(int), sizeof(int));
            if (count < max_fds) {
                fds_out[count++] = descriptor;
            } else {
                // CMSG_SPACE rounding can leave room for one more than
                // asked; the caller's array cannot hold it. The ones copied
                // so far are still in `message`, so this closes each once.
                close_all_received(&message);
                return -EMSGSIZE;
            }
        }
    }
    *nfds_out = count;
    return received;
}

ssize_t cposix_recv_peek(int fd, void *buffer, size_t length) {
    ssize_t peeked = recv(fd, buffer, length, MSG_PEEK);
    return peeked < 0 ? -(ssize_t)errno : peeked;
}
