// Plain system calls, each returning its result or -errno, so that Swift has
// one error convention for everything in this target.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#define RESULT_OR_ERRNO(call) do { int result_ = (call); return result_ < 0 ? -errno : result_; } while (0)

int cposix_socket(int domain, int type) {
    RESULT_OR_ERRNO(socket(domain, type, 0));
}

int cposix_socketpair(int type, int fds[2]) {
    RESULT_OR_ERRNO(socketpair(AF_UNIX, type, 0, fds));
}

int cposix_accept(int fd, int flags) {
    RESULT_OR_ERRNO(accept4(fd, NULL, NULL, flags));
}

int cposix_listen(int fd, int backlog) {
    RESULT_OR_ERRNO(listen(fd, backlog));
}

int cposix_shutdown(int fd, int how) {
    RESULT_OR_ERRNO(shutdown(fd, how));
}

int cposix_close(int fd) {
    RESULT_OR_ERRNO(close(fd));
}

int cposix_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        return -errno;
    }
    int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted == flags) {
        return 0;
    }
    RESULT_OR_ERRNO(fcntl(fd, F_SETFL, wanted));
}

int cposix_is_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
        return -errno;
    }
    return (flags & FD_CLOEXEC) ? 1 : 0;
}

int cposix_lstat(const char *path, struct stat *out) {
    RESULT_OR_ERRNO(lstat(path, out));
}

int cposix_stat(const char *path, struct stat *out) {
    RESULT_OR_ERRNO(stat(path, out));
}

int cposix_fstat(int fd, struct stat *out) {
    RESULT_OR_ERRNO(fstat(fd, out));
}

int cposix_unlink(const char *path) {
    RESULT_OR_ERRNO(unlink(path));
}

int cposix_chmod(const char *path, mode_t mode) {
    RESULT_OR_ERRNO(chmod(path, mode));
}

int cposix_chgrp(const char *path, gid_t group) {
    RESULT_OR_ERRNO(lchown(path, (uid_t)-1, group));
}

int cposix_ftruncate(int fd, uint64_t size) {
    if (size > (uint64_t)INT64_MAX) {
        return -EFBIG;
    }
    RESULT_OR_ERRNO(ftruncate(fd, (off_t)size));
}

int cposix_punch_hole(int fd, uint64_t offset, uint64_t length) {
    if (offset > (uint64_t)INT64_MAX || length > (uint64_t)INT64_MAX - offset) {
        return -EFBIG;
    }
    // KEEP_SIZE is required with PUNCH_HOLE (fallocate(2)): the file keeps
    // its length, the range reads back as zeros and its pages are freed.
    RESULT_OR_ERRNO(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length));
}

int cposix_poll(struct pollfd *fds, unsigned long count, int timeout_ms) {
    RESULT_OR_ERRNO(poll(fds, (nfds_t)count, timeout_ms));
}

int cposix_set_affinity(int pid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0) {
        for (int i = 0; i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    } else {
        CPU_SET(cpu, &set);
    }
    RESULT_OR_ERRNO(sched_setaffinity(pid, sizeof set, &set));
}

int cposix_set_memlock(int pid, unsigned long long bytes) {
    struct rlimit limit = { .rlim_cur = bytes, .rlim_max = bytes };
    RESULT_OR_ERRNO(prlimit(pid, RLIMIT_MEMLOCK, &limit, NULL));
}

int cposix_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -errno;
    if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -errno;
    return 0;
}
