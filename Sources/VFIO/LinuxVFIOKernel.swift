import CPosix
import CVFIO
import Glibc
import Posix

/// The real kernel: ioctls through the CVFIO shim, everything else through
/// the CPosix one. Stateless, so freely shared.
///
/// Both shims return -errno themselves, so nothing here reads the
/// thread-local `errno` after the fact, except `directoryEntries`, which uses
/// libc's directory stream and reads errno immediately after the failing call.
public struct LinuxVFIOKernel: VFIOKernel {
    public init() {}

    public func open(_ path: String, flags: Int32) -> Int32 {
        // No mode: VFIO never creates files.
        cposix_open(path, flags, 0)
    }

    public func close(_ fd: Int32) -> Int32 {
        cposix_close(fd)
    }

    public func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int {
        cvfio_ioctl(fd, request, argument)
    }

    public func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int {
        cvfio_ioctl_int(fd, request, value)
    }

    public func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        cposix_pread(fd, buffer.baseAddress, buffer.count, offset)
    }

    public func pwrite(_ fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int {
        cposix_pwrite(fd, buffer.baseAddress, buffer.count, offset)
    }

    public func readLink(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return -Int(EINVAL) }
        return cposix_readlink(path, base.assumingMemoryBound(to: CChar.self), buffer.count)
    }

    public func directoryEntries(_ path: String, into names: inout [String]) -> Int {
        guard let stream = opendir(path) else { return -Int(errno) }
        defer { closedir(stream) }
        names.removeAll()
        // readdir returns nil both at the end and on error; only errno tells
        // them apart, so clear it first.
        errno = 0
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        if errno != 0 { return -Int(errno) }
        names.sort()
        return 0
    }

    public func memoryLockLimit() -> (soft: UInt64, hard: UInt64)? {
        ResourceLimits.memoryLock()
    }
}
