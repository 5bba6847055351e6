// Unix socket addresses, including abstract names, for bind/connect/sendto.

#define _GNU_SOURCE
#include "CPosix.h"

#include <errno.h>
#include <string.h>

int cposix_unix_address(const char *name, struct sockaddr_un *address, socklen_t *length) {
    size_t name_length = strlen(name);
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (name[0] == '@') {
        // Abstract namespace: sun_path[0] is NUL and the name is the rest,
        // counted by the length alone (a trailing NUL would be part of it).
        size_t abstract_length = name_length - 1;
        if (abstract_length == 0) {
            return -EINVAL;
        }
        if (abstract_length > sizeof(address->sun_path) - 1) {
            return -ENAMETOOLONG;
        }
        memcpy(address->sun_path + 1, name + 1, abstract_length);
        *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + abstract_length);
        return 0;
    }
    if (name_length == 0) {
        return -EINVAL;
    }
    // A path needs its terminating NUL inside sun_path: Linux would accept
    // a full 108-byte path without one, but other tools (and getsockname
    // callers) then read past the end.
    if (name_length > sizeof(address->sun_path) - 1) {
        return -ENAMETOOLONG;
    }
    memcpy(address->sun_path, name, name_length);
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_length + 1);
    return 0;
}

int cposix_bind_unix(int fd, const char *name) {
    struct sockaddr_un address;
    socklen_t length;
    int built = cposix_unix_address(name, &address, &length);
    if (built < 0) {
        return built;
    }
    return bind(fd, (const struct sockaddr *)&address, length) < 0 ? -errno : 0;
}

int cposix_connect_unix(int fd, const char *name) {
    struct sockaddr_un address;
    socklen_t length;
    int built = cposix_unix_address(name, &address, &length);
    if (built < 0) {
        return built;
    }
    return connect(fd, (const struct sockaddr *)&address, length) < 0 ? -errno : 0;
}

ssize_t cposix_sendto_unix(int fd, const void *buffer, size_t length, const char *name) {
    struct sockaddr_un address;
    socklen_t address_length;
    int built = cposix_unix_address(name, &address, &address_length);
    if (built < 0) {
        return built;
    }
    ssize_t sent = sendto(fd, buffer, length, MSG_NOSIGNAL,
                          (const struct sockaddr *)&address, address_length);
    return sent < 0 ? -(ssize_t)errno : sent;
}

int cposix_unix_listening_path(int fd, char *path, size_t capacity) {
    struct sockaddr_un address;
    socklen_t length = sizeof(address);
    memset(&address, 0, sizeof(address));
    if (getsockname(fd, (struct sockaddr *)&address, &length) < 0) {
        return -errno;
    }
    if (capacity == 0) {
        return -EINVAL;
    }
    path[0] = 0;
    if (address.sun_family != AF_UNIX) {
        return -EAFNOSUPPORT;
    }
    size_t path_length = length > offsetof(struct sockaddr_un, sun_path) ? length - offsetof(struct sockaddr_un, sun_path) : 0;
    if (path_length > 0 && address.sun_path[0] != 0) {
        size_t n = strnlen(address.sun_path, path_length);
        if (n >= capacity) {
            return -ENAMETOOLONG;
        }
        memcpy(path, address.sun_path, n);
        path[n] = 0;
    }
    int listening = 0;
    socklen_t option_length = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &option_length) < 0) {
        return -errno;
    }
    return listening ? 1 : 0;
}
