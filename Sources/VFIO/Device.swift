import CVFIO
import Glibc
import Logging
import Posix
import VTd

/// A device descriptor from VFIO_GROUP_GET_DEVICE_FD: info, regions, reset,
/// and region access through pread/pwrite at the region's offset.
///
/// Thread-safe: the descriptor stays open for the length of every call on it
/// (Posix's scoped access).
public final class Device: Sendable {
    /// The device's name in its group, e.g. "0000:01:00.0".
    public let name: String

    let fd: FileDescriptor
    let kernel: any VFIOKernel
    private let logger: Logger

    init(name: String, fd: FileDescriptor, kernel: any VFIOKernel, logger: Logger) {
        self.name = name
        self.fd = fd
        self.kernel = kernel
        self.logger = logger
    }

    /// Drives a device descriptor received from elsewhere — a VMM gets it
    /// from the daemon's `attach` over SCM_RIGHTS. `descriptor` keeps its
    /// owner semantics: it closes once, when the last holder lets go or at
    /// `close()`.
    public convenience init(adopting descriptor: FileDescriptor, name: String,
                            kernel: any VFIOKernel = LinuxVFIOKernel(), logger: Logger) {
        self.init(name: name, fd: descriptor, kernel: kernel, logger: logger)
    }

    /// The device descriptor itself, to hand to systemd's file descriptor
    /// store (sd_notify FDSTORE=1), which keeps a duplicate across a restart.
    /// Still owned here.
    public var storableDescriptor: FileDescriptor { fd }

    private var subject: String { "device \(name)" }

    /// VFIO_DEVICE_GET_INFO. Capabilities (VFIO_DEVICE_FLAGS_CAPS, s390 only)
    /// are not requested; the fixed fields are always filled.
    public func info() throws(VFIOError) -> DeviceInfo {
        var info = vfio_device_info()
        info.argsz = UInt32(cvfio_sizeof_vfio_device_info)
        let kernel = kernel
        try fd.vfio("VFIO_DEVICE_GET_INFO") { kernel.ioctl($0, cvfio_VFIO_DEVICE_GET_INFO, &info) }
        return DeviceInfo(flags: info.flags, numRegions: info.num_regions, numIRQs: info.num_irqs)
    }

    /// VFIO_DEVICE_GET_REGION_INFO for region `index` (see `RegionInfo.pciConfig`,
    /// `RegionInfo.pciBAR(_:)`). The fixed fields are filled whether or not
    /// the region has capabilities (sparse mmap areas, a region type); with
    /// `capabilities`, a region that has them is asked again with the argsz
    /// the kernel wants, and its chain is returned raw.
    public func regionInfo(_ index: UInt32, capabilities: Bool = false) throws(VFIOError) -> RegionInfo {
        var region = vfio_region_info()
        region.argsz = UInt32(cvfio_sizeof_vfio_region_info)
        region.index = index
        let kernel = kernel
        try fd.vfio("VFIO_DEVICE_GET_REGION_INFO", detail: "region \(index)", hint: {
            $0 == EINVAL ? "the device has no region \(index)" : nil
        }) {
            kernel.ioctl($0, cvfio_VFIO_DEVICE_GET_REGION_INFO, &region)
        }
        let fixed = Int(cvfio_sizeof_vfio_region_info)
        let wanted = Int(region.argsz)
        guard capabilities, UInt(region.flags) & cvfio_VFIO_REGION_INFO_FLAG_CAPS != 0, wanted > fixed, wanted <= 1 << 16 else {
            return RegionInfo(index: index, flags: region.flags, size: region.size, offset: region.offset)
        }
        // A second call with room for the chain (vfio.h: "the caller must
        // re-call with at least argsz"). 64 KiB bounds what we allocate.
        var bytes = [UInt8](repeating: 0, count: wanted)
        try bytes.withUnsafeMutableBytes { buffer in Result { () throws(VFIOError) -> Void in
            buffer.storeBytes(of: UInt32(wanted), toByteOffset: 0, as: UInt32.self)
            buffer.storeBytes(of: index, toByteOffset: 8, as: UInt32.self)
            try fd.vfio("VFIO_DEVICE_GET_REGION_INFO", detail: "region \(index), with capabilities") {
                kernel.ioctl($0, cvfio_VFIO_DEVICE_GET_REGION_INFO, buffer.baseAddress!)
            }
        } }.get()
        let full = bytes.withUnsafeBytes { $0.load(as: vfio_region_info.self) }
        let chainEnd = min(Int(full.argsz), wanted)
        guard full.cap_offset >= UInt32(fixed), Int(full.cap_offset) < chainEnd else {
            return RegionInfo(index: index, flags: full.flags, size: full.size, offset: full.offset)
        }
        return RegionInfo(index: index, flags: full.flags, size: full.size, offset: full.offset,
                          capabilities: Array(bytes[fixed..<chainEnd]), capabilityOffset: full.cap_offset)
    }

    /// VFIO_DEVICE_RESET. Fails without calling the kernel when the device
    /// does not advertise VFIO_DEVICE_FLAGS_RESET (no FLR, PM or bus reset
    /// that vfio-pci could use).
    public func reset() throws(VFIOError) {
        guard try info().supportsReset else {
            throw VFIOError(operation: "VFIO_DEVICE_RESET", subject: subject, errno: 0,
                            detail: "device does not advertise VFIO_DEVICE_FLAGS_RESET",
                            hint: "the device has no reset method vfio-pci can use")
        }
        let kernel = kernel
        try fd.vfio("VFIO_DEVICE_RESET") { kernel.ioctl($0, cvfio_VFIO_DEVICE_RESET, value: 0) }
        logger.debug("reset device", metadata: ["device": "\(name)"])
    }

    /// Reads `count` bytes at `offset` inside `region`.
    public func read(_ region: RegionInfo, at offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        try checkBounds(region, offset: offset, count: count, operation: "pread")
        var bytes = [UInt8](repeating: 0, count: count)
        let kernel = kernel
        let subject = subject
        // Result carries the typed error out of Array's untyped-rethrows closure.
        try bytes.withUnsafeMutableBytes { buffer in Result { () throws(VFIOError) -> Void in
            var done = 0
            while done < count {
                let at = Int64(region.offset + offset) + Int64(done)
                let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
                let n = try fd.vfio("pread", detail: "region \(region.index) offset \(hex(offset))") {
                    kernel.pread($0, into: rest, at: at)
                }
                guard n > 0 else {
                    throw VFIOError(operation: "pread", subject: subject, errno: 0,
                                    detail: "region \(region.index) ended after \(done) of \(count) bytes")
                }
                done += n
            }
        } }.get()
        return bytes
    }

    /// Writes `bytes` at `offset` inside `region`.
    public func write(_ region: RegionInfo, at offset: UInt64, bytes: [UInt8]) throws(VFIOError) {
        try checkBounds(region, offset: offset, count: bytes.count, operation: "pwrite")
        let kernel = kernel
        let subject = subject
        let count = bytes.count
        try bytes.withUnsafeBytes { buffer in Result { () throws(VFIOError) -> Void in
            var done = 0
            while done < count {
                let at = Int64(region.offset + offset) + Int64(done)
                let rest = UnsafeRawBufferPointer(rebasing: buffer[done...])
                let n = try fd.vfio("pwrite", detail: "region \(region.index) offset \(hex(offset))") {
                    kernel.pwrite($0, from: rest, at: at)
                }
                guard n > 0 else {
                    throw VFIOError(operation: "pwrite", subject: subject, errno: 0,
                                    detail: "region \(region.index) took \(done) of \(count) bytes")
                }
                done += n
            }
        } }.get()
    }

    /// Reads a little-endian integer (PCI config space and BAR registers are
    /// little-endian) at `offset` inside `region`.
    public func read<T: FixedWidthInteger>(_ type: T.Type, from region: RegionInfo, at offset: UInt64) throws(VFIOError) -> T {
        let bytes = try read(region, at: offset, count: MemoryLayout<T>.size)
        return bytes.reversed().reduce(T.zero) { ($0 << 8) | T(truncatingIfNeeded: $1) }
    }

    /// Writes `value` little-endian at `offset` inside `region`.
    public func write<T: FixedWidthInteger>(_ value: T, to region: RegionInfo, at offset: UInt64) throws(VFIOError) {
        let bytes = (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
        try write(region, at: offset, bytes: bytes)
    }

    /// A duplicate of the device descriptor (F_DUPFD_CLOEXEC), owned by the
    /// caller: the daemon hands it to the VMM over SCM_RIGHTS, so the VMM can
    /// drive regions and interrupts while DMA mapping stays with the daemon.
    public func duplicateDescriptor() throws(VFIOError) -> FileDescriptor {
        // Through the kernel interface, like every other call on the device,
        // so that the copy is closed through it too.
        let kernel = kernel
        let copy = try fd.vfio("fcntl(F_DUPFD_CLOEXEC)", hint: { $0 == EMFILE ? "the process is out of file descriptors (LimitNOFILE)" : nil }) {
            kernel.duplicate($0)
        }
        return FileDescriptor(adopting: copy, kernel: kernel, subject: "device \(name) (copy for the VMM)")
    }

    /// Closes the device descriptor.
    public func close() throws(VFIOError) {
        do { try fd.close() } catch { throw VFIOError(error) }
    }

    private func checkBounds(_ region: RegionInfo, offset: UInt64, count: Int, operation: String) throws(VFIOError) {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(max(count, 0)))
        guard count >= 0, !overflow, end <= region.size,
              region.offset.addingReportingOverflow(end).overflow == false,
              region.offset + end <= UInt64(Int64.max) else {
            throw VFIOError(operation: operation, subject: subject, errno: 0,
                            detail: "\(count) bytes at \(hex(offset)) lie outside region \(region.index) "
                                + "of \(hex(region.size)) bytes")
        }
    }
}
