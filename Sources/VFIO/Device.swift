import CVFIO
import Glibc
import Logging
import VTd

/// A device descriptor from VFIO_GROUP_GET_DEVICE_FD: info, regions, reset,
/// and region access through pread/pwrite at the region's offset.
///
/// Thread-safe: calls on one device are serialized by its descriptor lock.
public final class Device: Sendable {
    /// The device's name in its group, e.g. "0000:01:00.0".
    public let name: String

    let fd: OwnedFD
    private let kernel: any VFIOKernel
    private let logger: Logger

    init(name: String, fd: OwnedFD, kernel: any VFIOKernel, logger: Logger) {
        self.name = name
        self.fd = fd
        self.kernel = kernel
        self.logger = logger
    }

    /// Adopts a device descriptor received from elsewhere — a VMM gets it
    /// from the daemon's `attach` over SCM_RIGHTS. The descriptor is closed
    /// exactly once, by this object.
    public convenience init(adopting descriptor: Int32, name: String,
                            kernel: any VFIOKernel = LinuxVFIOKernel(), logger: Logger) {
        self.init(name: name, fd: OwnedFD(adopting: descriptor, path: "device \(name)", kernel: kernel),
                  kernel: kernel, logger: logger)
    }

    private var subject: String { "device \(name)" }

    /// VFIO_DEVICE_GET_INFO. Capabilities (VFIO_DEVICE_FLAGS_CAPS, s390 only)
    /// are not requested; the fixed fields are always filled.
    public func info() throws(VFIOError) -> DeviceInfo {
        var info = vfio_device_info()
        info.argsz = UInt32(cvfio_sizeof_vfio_device_info)
        let kernel = kernel
        let subject = subject
        try fd.withDescriptor("VFIO_DEVICE_GET_INFO") { (raw) throws(VFIOError) -> Int in
            try syscallRetrying("VFIO_DEVICE_GET_INFO", on: subject) {
                kernel.ioctl(raw, cvfio_VFIO_DEVICE_GET_INFO, &info)
            }
        }
        return DeviceInfo(flags: info.flags, numRegions: info.num_regions, numIRQs: info.num_irqs)
    }

    /// VFIO_DEVICE_GET_REGION_INFO for region `index` (see `RegionInfo.pciConfig`,
    /// `RegionInfo.pciBAR(_:)`). A region with capabilities (sparse mmap) gets
    /// a larger argsz back, but its fixed fields are filled regardless, and
    /// they are all we use.
    public func regionInfo(_ index: UInt32) throws(VFIOError) -> RegionInfo {
        var region = vfio_region_info()
        region.argsz = UInt32(cvfio_sizeof_vfio_region_info)
        region.index = index
        let kernel = kernel
        let subject = subject
        try fd.withDescriptor("VFIO_DEVICE_GET_REGION_INFO") { (raw) throws(VFIOError) -> Int in
            try syscallRetrying("VFIO_DEVICE_GET_REGION_INFO", on: subject, detail: "region \(index)", hint: {
                $0 == EINVAL ? "the device has no region \(index)" : nil
            }) {
                kernel.ioctl(raw, cvfio_VFIO_DEVICE_GET_REGION_INFO, &region)
            }
        }
        return RegionInfo(index: index, flags: region.flags, size: region.size, offset: region.offset)
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
        let subject = subject
        try fd.withDescriptor("VFIO_DEVICE_RESET") { (raw) throws(VFIOError) -> Int in
            try syscallRetrying("VFIO_DEVICE_RESET", on: subject) {
                kernel.ioctl(raw, cvfio_VFIO_DEVICE_RESET, value: 0)
            }
        }
        logger.debug("reset device", metadata: ["device": "\(name)"])
    }

    /// Reads `count` bytes at `offset` inside `region`.
    public func read(_ region: RegionInfo, at offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        try checkBounds(region, offset: offset, count: count, operation: "pread")
        var bytes = [UInt8](repeating: 0, count: count)
        let kernel = kernel
        let subject = subject
        try fd.withDescriptor("pread") { (raw) throws(VFIOError) -> Int in
            // Result carries the typed error out of Array's untyped-rethrows closure.
            try bytes.withUnsafeMutableBytes { buffer in Result { () throws(VFIOError) -> Int in
                var done = 0
                while done < count {
                    let at = Int64(region.offset + offset) + Int64(done)
                    let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
                    let n = try syscallRetrying("pread", on: subject, detail: "region \(region.index) offset \(hex(offset))") {
                        kernel.pread(raw, into: rest, at: at)
                    }
                    guard n > 0 else {
                        throw VFIOError(operation: "pread", subject: subject, errno: 0,
                                        detail: "region \(region.index) ended after \(done) of \(count) bytes")
                    }
                    done += n
                }
                return done
            } }.get()
        }
        return bytes
    }

    /// Writes `bytes` at `offset` inside `region`.
    public func write(_ region: RegionInfo, at offset: UInt64, bytes: [UInt8]) throws(VFIOError) {
        try checkBounds(region, offset: offset, count: bytes.count, operation: "pwrite")
        let kernel = kernel
        let subject = subject
        let count = bytes.count
        try fd.withDescriptor("pwrite") { (raw) throws(VFIOError) -> Int in
            try bytes.withUnsafeBytes { buffer in Result { () throws(VFIOError) -> Int in
                var done = 0
                while done < count {
                    let at = Int64(region.offset + offset) + Int64(done)
                    let rest = UnsafeRawBufferPointer(rebasing: buffer[done...])
                    let n = try syscallRetrying("pwrite", on: subject, detail: "region \(region.index) offset \(hex(offset))") {
                        kernel.pwrite(raw, from: rest, at: at)
                    }
                    guard n > 0 else {
                        throw VFIOError(operation: "pwrite", subject: subject, errno: 0,
                                        detail: "region \(region.index) took \(done) of \(count) bytes")
                    }
                    done += n
                }
                return done
            } }.get()
        }
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

    /// Closes the device descriptor.
    /// A duplicate of the device descriptor (F_DUPFD_CLOEXEC), owned by the
    /// caller: the daemon hands it to the VMM over SCM_RIGHTS, so the VMM can
    /// drive regions and interrupts while DMA mapping stays with the daemon.
    public func duplicateDescriptor() throws(VFIOError) -> Int32 {
        let subject = self.subject
        return try fd.withDescriptor("fcntl(F_DUPFD_CLOEXEC)") { (raw) throws(VFIOError) -> Int32 in
            let copy = fcntl(raw, F_DUPFD_CLOEXEC, 0)
            if copy < 0 {
                throw VFIOError(operation: "fcntl(F_DUPFD_CLOEXEC)", subject: subject, errno: errno,
                                hint: "the process may be out of file descriptors (LimitNOFILE)")
            }
            return copy
        }
    }

    public func close() throws(VFIOError) {
        try fd.close()
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
