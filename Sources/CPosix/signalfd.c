// signalfd(2): signals as readable data, so the daemon's poll loop handles
// SIGTERM/SIGHUP like any other event instead of in a signal handler.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int cposix_signalfd_create(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int index = 0; index < count; index++) {
        if (sigaddset(&set, signals[index]) < 0) {
            return -EINVAL;
        }
    }
    // The descriptor first: if it cannot be made, no mask has changed.
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    // Blocked, the signals stay pending (readable from fd) instead of
    // running their default action. pthread_sigmask returns the error
    // number itself rather than setting errno.
    int failed = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (failed != 0) {
        close(fd);
        return -failed;
    }
    return fd;
}

int cposix_signalfd_read(int fd, int *signo) {
    struct signalfd_siginfo info;
    ssize_t done = read(fd, &info, sizeof(info));
    if (done < 0) {
        return -errno;
    }
    // The kernel only ever returns whole records.
    if ((size_t)done != sizeof(info)) {
        return -EIO;
    }
    *signo = (int)info.ssi_signo;
    return 0;
}
