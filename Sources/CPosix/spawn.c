#include "CPosix.h"

#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

int cposix_spawn_restricted(const char *path, char *const argv[], long uid, long gid,
                             uint64_t memlock_bytes, int log_fd) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) return (int)pid;
    // Child: async-signal-safe calls only, then exec.
    if (log_fd >= 0) {
        if (dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(127);
    }
    if (memlock_bytes != UINT64_MAX) {
        struct rlimit limit = { .rlim_cur = (rlim_t)memlock_bytes, .rlim_max = (rlim_t)memlock_bytes };
        if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) _exit(127);
    }
    if (gid >= 0) {
        if (setgroups(0, NULL) != 0) _exit(127);
        if (setgid((gid_t)gid) != 0) _exit(127);
    }
    if (uid >= 0 && setuid((uid_t)uid) != 0) _exit(127);
    execv(path, argv);
    _exit(127);
}
