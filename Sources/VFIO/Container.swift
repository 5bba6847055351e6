import CVFIO
import Glibc
import Logging
import Posix
import Synchronization
import VTd

/// A VFIO container (/dev/vfio/vfio): one IOMMU address space shared by the
/// groups attached to it, where MAP_DMA and UNMAP_DMA take effect.
///
/// Lifecycle, in the order the kernel requires (include/uapi/linux/vfio.h):
/// `open` checks the API version and picks type1v2 (or type1); a group is
/// attached with `Group.setContainer`; only then `setIOMMU` (the kernel
/// rejects VFIO_SET_IOMMU on a container with no group); then `info`, `map`,
/// `unmap`. `attach(_:)` does the middle two steps.
///
/// Thread-safe: the descriptor stays open for the length of every call on it
/// (Posix's scoped access), and the bookkeeping is behind a lock; the kernel
/// serializes MAP_DMA and UNMAP_DMA itself (type1's iommu lock).
public final class Container: Sendable {
    /// The node that was opened, normally "/dev/vfio/vfio".
    public let path: String
    /// The IOMMU model chosen at open: type1v2 when the kernel offers it.
    public let iommuType: IOMMUType

    let fd: FileDescriptor
    private let kernel: any VFIOKernel
    private let paths: VFIOPaths
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var attachedGroups: Set<Int> = []
        var iommuSet = false
        var supportsUnmapAll = false
        var lastReportedDMAAvailable: UInt32?
    }

    /// Largest GET_INFO reply we accept; the real one is well under a page.
    static let maximumInfoSize = 1 << 20
    /// GET_INFO attempts: one with the fixed struct, one with the size the
    /// kernel asked for, and spare ones in case the chain grew in between
    /// (a group was attached concurrently).
    static let maximumInfoAttempts = 4

    private init(path: String, iommuType: IOMMUType, fd: FileDescriptor, kernel: any VFIOKernel,
                 paths: VFIOPaths, logger: Logger) {
        self.path = path
        self.iommuType = iommuType
        self.fd = fd
        self.kernel = kernel
        self.paths = paths
        self.logger = logger
    }

    /// Opens the container node, checks the VFIO API version, and picks the
    /// type1 IOMMU model the kernel supports (type1v2 preferred).
    ///
    /// - Throws: `VFIOError`; when the node does not exist, its hint says which
    ///   modules to load and that the device must be bound to vfio-pci.
    public static func open(
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel(),
        logger: Logger
    ) throws(VFIOError) -> Container {
        let path = paths.container
        let fd = try FileDescriptor.open(path, kernel: kernel) { ErrorHints.openContainer($0, path: path) }

        let version = try fd.vfio("VFIO_GET_API_VERSION") { kernel.ioctl($0, cvfio_VFIO_GET_API_VERSION, value: 0) }
        guard UInt(version) == cvfio_VFIO_API_VERSION else {
            throw VFIOError(operation: "VFIO_GET_API_VERSION", subject: path, errno: 0,
                            detail: "kernel reports VFIO API \(version), this build speaks \(cvfio_VFIO_API_VERSION)")
        }

        func supports(_ type: IOMMUType) throws(VFIOError) -> Bool {
            try fd.vfio("VFIO_CHECK_EXTENSION", detail: "\(type)") {
                kernel.ioctl($0, cvfio_VFIO_CHECK_EXTENSION, value: type.rawValue)
            } > 0
        }
        let type: IOMMUType
        if try supports(.type1v2) {
            type = .type1v2
        } else if try supports(.type1) {
            type = .type1
        } else {
            throw VFIOError(operation: "VFIO_CHECK_EXTENSION", subject: path, errno: 0,
                            detail: "neither type1v2 nor type1 IOMMU is supported",
                            hint: "load vfio_iommu_type1 (modprobe vfio_iommu_type1) and enable the "
                                + "host IOMMU (intel_iommu=on)")
        }
        logger.info("opened VFIO container", metadata: ["path": "\(path)", "iommu": "\(type)"])
        return Container(path: path, iommuType: type, fd: fd, kernel: kernel, paths: paths, logger: logger)
    }

    /// Takes over a container another process set up and handed on (through
    /// systemd's file descriptor store): groups attached, IOMMU model set,
    /// mappings live. Asks only what the kernel can say about it: whether
    /// the model offers VFIO_UNMAP_ALL (CHECK_EXTENSION answers for the
    /// model that is set). The groups are recorded by `Group.adopt`.
    public static func adopt(
        _ descriptor: FileDescriptor,
        paths: VFIOPaths = VFIOPaths(),
        kernel: any VFIOKernel = LinuxVFIOKernel(),
        logger: Logger
    ) throws(VFIOError) -> Container {
        let path = paths.container
        let v2 = try descriptor.vfio("VFIO_CHECK_EXTENSION", detail: "type1v2 (adopted container)") {
            kernel.ioctl($0, cvfio_VFIO_CHECK_EXTENSION, value: IOMMUType.type1v2.rawValue)
        } > 0
        let unmapAll = try descriptor.vfio("VFIO_CHECK_EXTENSION", detail: "VFIO_UNMAP_ALL (adopted container)") {
            kernel.ioctl($0, cvfio_VFIO_CHECK_EXTENSION, value: cvfio_VFIO_UNMAP_ALL)
        } > 0
        let container = Container(path: path, iommuType: v2 ? .type1v2 : .type1, fd: descriptor, kernel: kernel,
                                  paths: paths, logger: logger)
        container.state.withLock {
            $0.iommuSet = true
            $0.supportsUnmapAll = unmapAll
        }
        logger.info("adopted VFIO container", metadata: ["iommu": "\(container.iommuType)", "unmapAll": "\(unmapAll)"])
        return container
    }

    /// The container descriptor itself, to hand to systemd's file descriptor
    /// store (sd_notify FDSTORE=1), which keeps a duplicate across a restart.
    /// Still owned here.
    public var storableDescriptor: FileDescriptor { fd }

    /// True once `setIOMMU` has succeeded.
    public var isIOMMUSet: Bool { state.withLock { $0.iommuSet } }

    /// True when the kernel offers VFIO_UNMAP_ALL (known after `setIOMMU`).
    public var supportsUnmapAll: Bool { state.withLock { $0.supportsUnmapAll } }

    /// The numbers of the groups attached to this container.
    public var attachedGroups: Set<Int> { state.withLock { $0.attachedGroups } }

    /// Attaches `group` (VFIO_GROUP_SET_CONTAINER) and, for the first group,
    /// sets the IOMMU model (VFIO_SET_IOMMU). Later groups join the IOMMU
    /// already set.
    public func attach(_ group: Group) throws(VFIOError) {
        try group.setContainer(self)
        if !isIOMMUSet { try setIOMMU() }
    }

    /// Sets the IOMMU model chosen at open (VFIO_SET_IOMMU), then asks whether
    /// the model supports VFIO_UNMAP_ALL. Needs at least one attached group.
    public func setIOMMU() throws(VFIOError) {
        let (groups, alreadySet) = state.withLock { ($0.attachedGroups.count, $0.iommuSet) }
        guard !alreadySet else {
            throw VFIOError(operation: "VFIO_SET_IOMMU", subject: path, errno: 0,
                            detail: "the IOMMU model is already set")
        }
        guard groups > 0 else {
            throw VFIOError(operation: "VFIO_SET_IOMMU", subject: path, errno: 0,
                            detail: "no group is attached",
                            hint: "attach a group first (Group.setContainer); the kernel refuses "
                                + "VFIO_SET_IOMMU on a container without a group")
        }
        let type = iommuType
        let kernel = kernel
        try fd.vfio("VFIO_SET_IOMMU", detail: "\(type)") { kernel.ioctl($0, cvfio_VFIO_SET_IOMMU, value: type.rawValue) }
        // With a model set, CHECK_EXTENSION asks that model, not every
        // registered one, so this answer is about our container.
        let unmapAll = try fd.vfio("VFIO_CHECK_EXTENSION", detail: "VFIO_UNMAP_ALL") {
            kernel.ioctl($0, cvfio_VFIO_CHECK_EXTENSION, value: cvfio_VFIO_UNMAP_ALL)
        } > 0
        state.withLock {
            $0.iommuSet = true
            $0.supportsUnmapAll = unmapAll
        }
        logger.info("set VFIO IOMMU model", metadata: [
            "path": "\(path)", "iommu": "\(type)", "unmapAll": "\(unmapAll)",
        ])
    }

    /// What the IOMMU allows (VFIO_IOMMU_GET_INFO): page sizes, usable IOVA
    /// ranges, mappings left.
    ///
    /// The reply's size is negotiated: the first call passes the fixed struct;
    /// when the capability chain does not fit, type1 sets VFIO_IOMMU_INFO_CAPS,
    /// leaves cap_offset 0 and writes the size it needs into argsz, so we
    /// retry with that size (vfio_iommu_type1.c, vfio_iommu_type1_get_info).
    public func info() throws(VFIOError) -> IOMMUInfo {
        try requireIOMMU("VFIO_IOMMU_GET_INFO")
        let kernel = kernel
        let fallbackPageSizes = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var size = Int(cvfio_sizeof_vfio_iommu_type1_info)
        for _ in 0..<Self.maximumInfoAttempts {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            buffer.storeBytes(of: UInt32(size), as: UInt32.self)
            try fd.vfio("VFIO_IOMMU_GET_INFO") { kernel.ioctl($0, cvfio_VFIO_IOMMU_GET_INFO, buffer.baseAddress!) }
            let wanted = Int(buffer.load(as: UInt32.self))
            let flags = UInt(buffer.load(fromByteOffset: Int(cvfio_offsetof_vfio_iommu_type1_info_flags),
                                         as: UInt32.self))
            if flags & cvfio_VFIO_IOMMU_INFO_CAPS != 0 && wanted > size {
                guard wanted <= Self.maximumInfoSize else {
                    throw VFIOError(operation: "VFIO_IOMMU_GET_INFO", subject: path, errno: 0,
                                    detail: "kernel asks for a \(wanted)-byte reply, more than the "
                                        + "\(Self.maximumInfoSize) we accept")
                }
                logger.trace("VFIO_IOMMU_GET_INFO wants a larger buffer",
                             metadata: ["had": "\(size)", "wants": "\(wanted)"])
                size = wanted
                continue
            }
            let info = try IOMMUInfo(getInfoReply: UnsafeRawBufferPointer(buffer),
                                     fallbackPageSizes: fallbackPageSizes, subject: path)
            state.withLock { $0.lastReportedDMAAvailable = info.dmaAvailable }
            return info
        }
        throw VFIOError(operation: "VFIO_IOMMU_GET_INFO", subject: path, errno: 0,
                        detail: "argsz still growing after \(Self.maximumInfoAttempts) attempts (last \(size) bytes)")
    }

    /// Maps [iova, iova + size) to this process's memory at `hostAddress`
    /// (VFIO_IOMMU_MAP_DMA). type1 pins the pages for as long as they stay
    /// mapped.
    ///
    /// - Throws: `VFIOError` whose hint explains the usual causes: ENOMEM
    ///   (RLIMIT_MEMLOCK), ENOSPC (dma_entry_limit), EEXIST (overlap), EINVAL.
    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        try requireIOMMU("VFIO_IOMMU_MAP_DMA")
        var request = vfio_iommu_type1_dma_map()
        request.argsz = UInt32(cvfio_sizeof_vfio_iommu_type1_dma_map)
        request.flags = permission.mapDMAFlags
        request.vaddr = hostAddress
        request.iova = iova
        request.size = size
        let kernel = kernel
        // Built only when needed: formatting it on every call cost more
        // than the rest of the wrapper (make bench, in the VM).
        func detail() -> String { "iova \(hex(iova)) size \(hex(size)) host \(hex(hostAddress)) \(permission)" }
        do {
            try fd.vfio("VFIO_IOMMU_MAP_DMA", detail: detail()) { kernel.ioctl($0, cvfio_VFIO_IOMMU_MAP_DMA, &request) }
        } catch {
            // Hints are gathered after the call, not inside it: they read
            // sysfs and rlimits, which can take a moment.
            var error = error
            if error.errno != 0 && error.errno != EBADF { error.hint = mapHint(error.errno) }
            logger.debug("VFIO_IOMMU_MAP_DMA failed", metadata: ["range": "\(detail())", "errno": "\(error.errno)"])
            throw error
        }
        logger.trace("mapped", metadata: ["range": "\(detail())"])
    }

    /// Unmaps exactly [iova, iova + size) (VFIO_IOMMU_UNMAP_DMA).
    ///
    /// The kernel reports how many bytes it unmapped; anything other than
    /// `size` is an error here (errno 0): under type1 a partial overlap can
    /// unmap more or less than asked, and either means our view of the
    /// mappings and the kernel's have diverged.
    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        try requireIOMMU("VFIO_IOMMU_UNMAP_DMA")
        func detail() -> String { "iova \(hex(iova)) size \(hex(size))" }
        let unmapped = try unmapCall(iova: iova, size: size, flags: 0, detail: detail())
        guard unmapped == size else {
            throw VFIOError(operation: "VFIO_IOMMU_UNMAP_DMA", subject: path, errno: 0,
                            detail: "kernel unmapped \(unmapped) bytes of \(size) at iova \(hex(iova))",
                            hint: "the range did not match whole mappings: unmap exactly what was mapped")
        }
        logger.trace("unmapped", metadata: ["range": "\(detail())"])
    }

    /// Unmaps whatever lies in [iova, iova + size) and returns the bytes the
    /// kernel unmapped, which may be 0: for a range that may or may not be
    /// mapped (a call whose outcome a crashed process never learned).
    @discardableResult
    public func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        try requireIOMMU("VFIO_IOMMU_UNMAP_DMA")
        return try unmapCall(iova: iova, size: size, flags: 0, detail: "iova \(hex(iova)) size \(hex(size)), mapped or not")
    }

    /// Unmaps every mapping in the container and returns the bytes unmapped.
    ///
    /// With VFIO_UNMAP_ALL (Linux 5.12+): one UNMAP_DMA with
    /// VFIO_DMA_UNMAP_FLAG_ALL, iova 0 and size 0, as the flag requires.
    /// Without it: the 64-bit space cannot be named in one call (size is a
    /// u64 and must be page aligned, so 2^64 does not fit), so we unmap
    /// [0, 2^63) and then [2^63, 2^64). Under type1v2 this fails with EINVAL
    /// only if one mapping straddles 2^63, which no real IOMMU address width
    /// allows.
    @discardableResult
    public func unmapAll() throws(VFIOError) -> UInt64 {
        try requireIOMMU("VFIO_IOMMU_UNMAP_DMA")
        let total: UInt64
        if supportsUnmapAll {
            total = try unmapCall(iova: 0, size: 0, flags: UInt32(cvfio_VFIO_DMA_UNMAP_FLAG_ALL),
                                  detail: "all (VFIO_DMA_UNMAP_FLAG_ALL)")
        } else {
            let half: UInt64 = 1 << 63
            let low = try unmapCall(iova: 0, size: half, flags: 0, detail: "all, lower half")
            let high = try unmapCall(iova: half, size: half, flags: 0, detail: "all, upper half")
            total = low &+ high
        }
        logger.debug("unmapped everything", metadata: ["path": "\(path)", "bytes": "\(total)"])
        return total
    }

    /// Closes the container. Mappings go away with the last reference the
    /// kernel holds (the container fd and attached groups).
    public func close() throws(VFIOError) {
        do { try fd.close() } catch { throw VFIOError(error) }
    }

    // MARK: used by Group

    func groupAttached(_ number: Int) {
        state.withLock { _ = $0.attachedGroups.insert(number) }
    }

    func groupDetached(_ number: Int) {
        let released = state.withLock { state -> Bool in
            guard state.attachedGroups.remove(number) != nil, state.attachedGroups.isEmpty,
                  state.iommuSet else { return false }
            // When the last group leaves, the kernel releases the container's
            // IOMMU model and every mapping with it
            // (drivers/vfio/container.c, vfio_group_detach_container); a new
            // group needs SET_IOMMU again.
            state.iommuSet = false
            state.supportsUnmapAll = false
            return true
        }
        if released {
            logger.info("last group left the VFIO container; IOMMU model released", metadata: ["path": "\(path)"])
        }
    }

    // MARK: private

    private func requireIOMMU(_ operation: String) throws(VFIOError) {
        guard isIOMMUSet else {
            throw VFIOError(operation: operation, subject: path, errno: 0,
                            detail: "the container has no IOMMU model set",
                            hint: "attach a group and call setIOMMU (or attach(_:)) first")
        }
    }

    /// One UNMAP_DMA; returns the size the kernel wrote back.
    private func unmapCall(iova: UInt64, size: UInt64, flags: UInt32, detail: @autoclosure () -> String) throws(VFIOError) -> UInt64 {
        var request = vfio_iommu_type1_dma_unmap()
        request.argsz = UInt32(cvfio_sizeof_vfio_iommu_type1_dma_unmap)
        request.flags = flags
        request.iova = iova
        request.size = size
        let kernel = kernel
        try fd.vfio("VFIO_IOMMU_UNMAP_DMA", detail: detail(), hint: ErrorHints.unmap) {
            kernel.ioctl($0, cvfio_VFIO_IOMMU_UNMAP_DMA, &request)
        }
        return request.size
    }

    private func mapHint(_ code: Int32) -> String? {
        switch code {
        case ENOMEM:
            return ErrorHints.map(code, memoryLock: kernel.memoryLockLimit(), entryLimit: nil,
                                  lastKnownAvailable: nil)
        case ENOSPC:
            let limit = try? Sysfs(kernel: kernel).readText(paths.dmaEntryLimit)
            let available = state.withLock { $0.lastReportedDMAAvailable }
            return ErrorHints.map(code, memoryLock: nil, entryLimit: limit, lastKnownAvailable: available)
        default:
            return ErrorHints.map(code, memoryLock: nil, entryLimit: nil, lastKnownAvailable: nil)
        }
    }
}
