import CPosix
import Glibc

extension FileDescriptor {
    /// An anonymous memory file of `size` bytes (memfd_create + ftruncate),
    /// close-on-exec. Its pages are allocated lazily and read as zero.
    ///
    /// This is what a VMM passes as guest RAM, and what the simulator, the
    /// tests and `GuestRAMBacking.anonymous` use in its place. `name` only
    /// labels it in /proc/PID/fd ("memfd:NAME") and need not be unique.
    ///
    /// - Parameter allowSealing: MFD_ALLOW_SEALING, so that F_ADD_SEALS can
    ///   later fix its size (QEMU's memory-backend-memfd seals by default).
    public static func memoryFile(name: String, size: UInt64, allowSealing: Bool = false) throws(SystemError) -> FileDescriptor {
        let flags = cposix_MFD_CLOEXEC | (allowSealing ? cposix_MFD_ALLOW_SEALING : 0)
        let fd = try systemCall("memfd_create", subject: name) { cposix_memfd_create(name, flags) }
        let file = FileDescriptor(adopting: fd, subject: "memfd \(name)")
        // On failure `file` goes out of scope and closes the descriptor.
        try file.truncate(to: size)
        return file
    }
}
