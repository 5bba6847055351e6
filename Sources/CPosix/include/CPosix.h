// CPosix: the system calls that Swift cannot express, or cannot express
// without reading the global errno after the fact. The Posix target is the
// only Swift code that calls it (apart from the simulator's process tools).
//
// Why this exists:
// - SCM_RIGHTS needs the CMSG_* macros (CMSG_SPACE, CMSG_FIRSTHDR, ...),
//   which are function-like macros the Clang importer drops.
// - struct sockaddr_un must be filled byte by byte for abstract names
//   (a leading NUL and no terminator), and its length checked against
//   sun_path, which is awkward and easy to get wrong through pointer casts.
// - fcntl(2) and open(2) are variadic; memfd_create(2) needs _GNU_SOURCE.
// - Every function returns the result (>= 0) or -errno, never -1 plus a
//   global errno, so Swift never has to read errno after the fact. None of
//   them retries EINTR: that policy lives in exactly one Swift helper
//   (retryingEINTR in Posix), and close is never retried.
//
// Exported names carry a `cposix_` prefix so they cannot collide with the
// plain macros and functions Swift imports from Glibc (MFD_CLOEXEC, ...).
#ifndef CPOSIX_H
#define CPOSIX_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: constants

/// Most descriptors one cposix_recvmsg_fds call accepts: the kernel's own
/// limit per message, SCM_MAX_FD. With room for all of them a message is
/// never truncated (MSG_CTRUNC), so a peer that sends more than a protocol
/// allows gets a protocol error reply instead of a lost connection.
#define CPOSIX_MAX_FDS 253

extern const unsigned cposix_MFD_CLOEXEC;
extern const unsigned cposix_MFD_ALLOW_SEALING;

// MARK: addresses (address.c)

/// Fills `address` for `name` and stores the length to pass to bind/connect.
///
/// A name starting with '@' is an abstract socket: the '@' becomes the
/// leading NUL and the length covers exactly the remaining bytes (no
/// terminator), as systemd and ss(8) spell them. Any other name is a path
/// and must fit in sun_path including its terminating NUL.
///
/// Returns 0, -EINVAL for an empty name (or a lone '@'), or -ENAMETOOLONG.
int cposix_unix_address(const char *name, struct sockaddr_un *address, socklen_t *length);

/// bind(2) to the Unix address `name` (see cposix_unix_address).
int cposix_bind_unix(int fd, const char *name);

/// connect(2) to the Unix address `name` (see cposix_unix_address).
int cposix_connect_unix(int fd, const char *name);

/// sendto(2) one datagram to the Unix address `name`, with MSG_NOSIGNAL.
/// Returns the bytes sent or -errno.
ssize_t cposix_sendto_unix(int fd, const void *buffer, size_t length, const char *name);
/// The path a Unix stream socket is bound to and whether it listens
/// (getsockname + SO_ACCEPTCONN): copies the NUL-terminated path (empty for
/// an unbound or abstract socket) into `path` of `capacity` bytes and
/// returns 1 if it listens, 0 if not, or -errno (ENOTSOCK: not a socket).
int cposix_unix_listening_path(int fd, char *path, size_t capacity);

// MARK: descriptor passing (fdpassing.c)

/// sendmsg(2) of the bytes gathered from `count` buffers (at most IOV_MAX),
/// with `nfds` descriptors as SCM_RIGHTS (nfds may be 0, then no control
/// message is attached) and MSG_NOSIGNAL, so a closed peer yields -EPIPE
/// instead of killing the process with SIGPIPE. Gathering lets many small
/// queued messages leave in one call and one socket buffer entry instead of
/// one each. The descriptors go with the first byte.
///
/// Returns the bytes sent (possibly fewer than asked) or -errno; -EINVAL if
/// nfds is negative or above 253 (SCM_MAX_FD). The kernel duplicates the
/// descriptors into the message: the caller still owns and closes its own.
ssize_t cposix_sendmsg_iov_fds(int fd, const struct iovec *buffers, int count, const int *fds, int nfds);

/// recvmsg(2) with room for up to `max_fds` descriptors (clamped to
/// CPOSIX_MAX_FDS), received with MSG_CMSG_CLOEXEC.
///
/// Returns the bytes received (0 = end of stream) and stores the received
/// descriptors in `fds_out` and their count in `nfds_out`; the caller owns them.
///
/// Returns -EMSGSIZE when the kernel reports MSG_CTRUNC: the peer sent more
/// descriptors than fit, or this process could not install them (out of
/// descriptors). The kernel has then already discarded some descriptors, so
/// the ones that did arrive are closed here and *nfds_out is 0. The bytes
/// of that recvmsg were consumed and are lost too: the caller cannot
/// resynchronise the stream and must close the connection.
ssize_t cposix_recvmsg_fds(int fd, void *buffer, size_t length, int *fds_out, int max_fds, int *nfds_out);

/// recv(2) with MSG_PEEK and no control buffer: copies up to `length`
/// queued bytes without consuming them. Descriptors queued with those bytes
/// are neither consumed nor installed (the kernel drops its peek duplicates
/// when there is no control buffer), so peeking cannot leak descriptors.
ssize_t cposix_recv_peek(int fd, void *buffer, size_t length);

// MARK: credentials (credentials.c)

/// SO_PEERCRED: the pid, uid and gid of the peer as they were when it called
/// connect(2) (for a client) or listen(2) (for a server). Returns 0 or -errno.
int cposix_peer_credentials(int fd, int *pid, unsigned *uid, unsigned *gid);

/// SO_PEERGROUPS: the peer's supplementary groups, recorded with its
/// credentials at connect(2) or listen(2) (Linux 4.13+), into `groups`
/// (room for `capacity`). Returns 0 with their number in *count; -ERANGE
/// with the number needed in *count when they do not fit; or -errno
/// (-ENOPROTOOPT on kernels without it).
int cposix_peer_groups(int fd, gid_t *groups, int capacity, int *count);

// MARK: memory (memory.c)

/// memfd_create(2). Returns the descriptor or -errno.
int cposix_memfd_create(const char *name, unsigned flags);

/// mmap(2) of `length` bytes of `fd` at `offset`, MAP_SHARED, readable and,
/// if `writable`, writable. Stores the address in *address and returns 0,
/// or returns -errno (*address is then NULL).
int cposix_mmap_shared(int fd, size_t length, int64_t offset, int writable, void **address);

/// munmap(2). Returns 0 or -errno.
int cposix_munmap(void *address, size_t length);

// MARK: files (files.c)

/// open(2); `mode` is used only with O_CREAT or O_TMPFILE.
int cposix_open(const char *path, int flags, mode_t mode);
ssize_t cposix_read(int fd, void *buffer, size_t count);
ssize_t cposix_write(int fd, const void *buffer, size_t count);
/// pread(2); -EINVAL for a negative offset.
ssize_t cposix_pread(int fd, void *buffer, size_t count, int64_t offset);
/// pwrite(2); -EINVAL for a negative offset.
ssize_t cposix_pwrite(int fd, const void *buffer, size_t count, int64_t offset);
int cposix_fsync(int fd);
/// fcntl(F_DUPFD_CLOEXEC): a new descriptor for the same open file.
int cposix_dup_cloexec(int fd);
int cposix_rename(const char *from, const char *to);
int cposix_mkdir(const char *path, mode_t mode);
/// readlink(2): bytes stored (not NUL-terminated), or -errno.
ssize_t cposix_readlink(const char *path, char *buffer, size_t size);
/// getrlimit(RLIMIT_MEMLOCK): 0 and the soft and hard limits in bytes
/// (UINT64_MAX for RLIM_INFINITY), or -errno.
int cposix_memlock_limit(uint64_t *soft, uint64_t *hard);

// MARK: signalfd (signalfd.c)

/// Blocks `signals` in the calling thread (pthread_sigmask) and returns a
/// signalfd for them, with SFD_CLOEXEC | SFD_NONBLOCK, or -errno (-EINVAL for
/// an invalid signal number; nothing is blocked then).
///
/// Only the calling thread's mask changes. Threads created afterwards
/// inherit it; threads that already exist do not, and a process-directed
/// signal may be delivered to one of them instead (with its default action).
int cposix_signalfd_create(const int *signals, int count);

/// Reads one pending signal from a signalfd into *signo. Returns 0, -EAGAIN
/// when none is pending (the descriptor is non-blocking), or -errno.
int cposix_signalfd_read(int fd, int *signo);

// MARK: plain system calls as result-or--errno (syscalls.c)

/// socket(2); `type` may include SOCK_NONBLOCK and SOCK_CLOEXEC.
int cposix_socket(int domain, int type);
/// socketpair(2) of AF_UNIX sockets.
int cposix_socketpair(int type, int fds[2]);
/// accept4(2) without the peer address (Unix peers are anonymous anyway).
int cposix_accept(int fd, int flags);
int cposix_listen(int fd, int backlog);
int cposix_shutdown(int fd, int how);
/// close(2). Never retry it on -EINTR: Linux has released the descriptor.
int cposix_close(int fd);
/// Sets or clears O_NONBLOCK (fcntl F_GETFL / F_SETFL).
int cposix_set_nonblocking(int fd, int on);
/// Returns 1 if FD_CLOEXEC is set, 0 if not, or -errno.
int cposix_is_cloexec(int fd);
/// fcntl(F_SETFD, FD_CLOEXEC): 0 or -errno.
int cposix_set_cloexec(int fd);
int cposix_lstat(const char *path, struct stat *out);
int cposix_stat(const char *path, struct stat *out);
int cposix_fstat(int fd, struct stat *out);
int cposix_unlink(const char *path);
int cposix_chmod(const char *path, mode_t mode);
/// lchown(2) that changes only the group (the owner stays as it is).
int cposix_chgrp(const char *path, gid_t group);
int cposix_ftruncate(int fd, uint64_t size);
/// fallocate(PUNCH_HOLE | KEEP_SIZE): frees the pages of [offset,
/// offset + length), which then read as zeros. 0 or -errno.
int cposix_punch_hole(int fd, uint64_t offset, uint64_t length);
/// poll(2). Returns the number of ready entries or -errno.
int cposix_poll(struct pollfd *fds, unsigned long count, int timeout_ms);

/// Pins process or thread `pid` (0: the caller) to CPU `cpu`, or lets it run
/// anywhere when `cpu` is negative. Returns 0 or -errno.
int cposix_set_affinity(int pid, int cpu);

/// Sets RLIMIT_MEMLOCK (soft and hard) of process `pid` (prlimit(2); raising
/// another process's hard limit needs CAP_SYS_RESOURCE). Returns 0 or -errno.
int cposix_set_memlock(int pid, unsigned long long bytes);

// --- process spawning with reduced privileges ----------------------------

/// fork + execv of `path` with `argv` (NULL-terminated), in a child that
/// first sets RLIMIT_MEMLOCK to `memlock_bytes` (both limits; UINT64_MAX
/// leaves it alone), drops supplementary groups and switches to `gid` and
/// `uid` (-1 keeps them), and sends stdout and stderr to `log_fd` (-1 keeps
/// them). Used to run a daemon without CAP_IPC_LOCK so that the kernel's
/// memory-lock accounting applies to it. Only async-signal-safe calls happen
/// between fork and exec. Returns the child's pid or -errno (from fork; a
/// failure in the child makes it exit with status 127).
int cposix_spawn_restricted(const char *path, char *const argv[], long uid, long gid,
                             uint64_t memlock_bytes, int log_fd);

// --- ordered stores to memory another process will read --------------------

/// A 64-bit store with release ordering: every store before it in program
/// order is visible before it. The mapping journal publishes a record with
/// it, so that a process killed at any instruction leaves either the old
/// word or the new one, never the new word ahead of the record it counts.
static inline void cposix_store_release_u64(uint64_t *address, uint64_t value) {
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
}

/// The matching load with acquire ordering.
static inline uint64_t cposix_load_acquire_u64(const uint64_t *address) {
    return __atomic_load_n(address, __ATOMIC_ACQUIRE);
}

#ifdef __cplusplus
}
#endif

#endif
