/// The kernel interface the VFIO layer uses, as a protocol so that the logic
/// above it (argsz negotiation, capability parsing, error hints) can be tested
/// without /dev/vfio. Production code uses `LinuxVFIOKernel`; fakes live only
/// in the test targets.
///
/// Every call follows one convention: it returns a non-negative result, or
/// `-errno`. Implementations never retry EINTR and never throw; retrying
/// happens in Posix's one helper (`retryingEINTR`), and turning failures into
/// `VFIOError` in KernelCall.swift. Descriptors the kernel hands out are
/// owned by Posix `FileDescriptor`s that close them through `close(_:)`, so
/// a fake kernel sees every close.
public protocol VFIOKernel: Sendable {
    /// open(2) without O_CREAT: the new descriptor, or -errno.
    func open(_ path: String, flags: Int32) -> Int32
    /// close(2): 0, or -errno. The descriptor is gone either way on Linux.
    func close(_ fd: Int32) -> Int32
    /// ioctl(2) with a pointer argument: the ioctl's result, or -errno.
    func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int
    /// ioctl(2) with an integer argument passed by value: the result, or -errno.
    func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int
    /// pread(2): bytes read into `buffer`, or -errno.
    func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int
    /// pwrite(2): bytes written from `buffer`, or -errno.
    func pwrite(_ fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int
    /// readlink(2): bytes stored in `buffer` (no terminating NUL), or -errno.
    func readLink(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// The names in a directory, without "." and "..", into `names`: 0, or -errno.
    func directoryEntries(_ path: String, into names: inout [String]) -> Int
    /// getrlimit(RLIMIT_MEMLOCK) in bytes (UInt64.max for unlimited), or nil
    /// when it cannot be read. Used only to explain ENOMEM from MAP_DMA.
    func memoryLockLimit() -> (soft: UInt64, hard: UInt64)?
}
