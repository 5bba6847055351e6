// File calls: open, read and write, metadata, and the directory operations
// an atomic replace needs. Each returns its result or -errno.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

int cposix_open(const char *path, int flags, mode_t mode) {
    // open(2) reads the mode only with O_CREAT or O_TMPFILE; passing it
    // always is harmless and keeps one entry point.
    int fd = open(path, flags, mode);
    return fd < 0 ? -errno : fd;
}

ssize_t cposix_read(int fd, void *buffer, size_t count) {
    ssize_t done = read(fd, buffer, count);
    return done < 0 ? -(ssize_t)errno : done;
}

ssize_t cposix_write(int fd, const void *buffer, size_t count) {
    ssize_t done = write(fd, buffer, count);
    return done < 0 ? -(ssize_t)errno : done;
}

ssize_t cposix_pread(int fd, void *buffer, size_t count, int64_t offset) {
    if (offset < 0) {
        return -EINVAL;
    }
    ssize_t done = pread(fd, buffer, count, (off_t)offset);
    return done < 0 ? -(ssize_t)errno : done;
}

ssize_t cposix_pwrite(int fd, const void *buffer, size_t count, int64_t offset) {
    if (offset < 0) {
        return -EINVAL;
    }
    ssize_t done = pwrite(fd, buffer, count, (off_t)offset);
    return done < 0 ? -(ssize_t)errno : done;
}

int cposix_fsync(int fd) {
    return fsync(fd) < 0 ? -errno : 0;
}

int cposix_dup_cloexec(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy < 0 ? -errno : copy;
}

int cposix_rename(const char *from, const char *to) {
    return rename(from, to) < 0 ? -errno : 0;
}

int cposix_mkdir(const char *path, mode_t mode) {
    return mkdir(path, mode) < 0 ? -errno : 0;
}

ssize_t cposix_readlink(const char *path, char *buffer, size_t size) {
    ssize_t done = readlink(path, buffer, size);
    return done < 0 ? -(ssize_t)errno : done;
}

int cposix_memlock_limit(uint64_t *soft, uint64_t *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) < 0) {
        return -errno;
    }
    *soft = limit.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_cur;
    *hard = limit.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_max;
    return 0;
}
