import CSocket
import Glibc

/// Creates an anonymous memory file of `size` bytes (memfd_create +
/// ftruncate), close-on-exec, and returns its descriptor; the caller owns it.
///
/// The pages are allocated lazily and read as zero. Such a descriptor is
/// what a VMM passes as guest RAM, and what the simulator and tests use in
/// its place. `name` only labels it in /proc/PID/fd and need not be unique.
public func makeMemFD(name: String, size: UInt64) throws(SystemError) -> Int32 {
    let fd = try syscall("memfd_create", name) { csocket_memfd_create(name, csocket_MFD_CLOEXEC) }
    let owner = Descriptor(adopting: fd)
    try syscall("ftruncate", "\(name), \(size) bytes") { csocket_ftruncate(fd, size) }
    return owner.take()
}
