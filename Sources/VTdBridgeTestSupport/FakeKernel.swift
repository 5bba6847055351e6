import CVFIO
import Glibc
import Synchronization
import VFIO

/// A scripted stand-in for the kernel (a test double: tests only), good enough to drive Container, Group
/// and Device through their logic: it decodes the same structs the real
/// kernel would and answers the way drivers/vfio does, with knobs for errors.
public final class FakeKernel: VFIOKernel {
    public init() {}

    public enum Node: Equatable, Sendable {
        case container
        case group(Int)
        case file([UInt8])
    }

    public enum Handle: Equatable, Sendable {
        case container
        case group(Int)
        case device(String)
        case file(String)
    }

    public struct Map: Equatable, Sendable {
        public var iova: UInt64
        public var size: UInt64
        public var vaddr: UInt64
        public var flags: UInt32
        public init(iova: UInt64, size: UInt64, vaddr: UInt64, flags: UInt32) {
            self.iova = iova
            self.size = size
            self.vaddr = vaddr
            self.flags = flags
        }
    }

    public struct Unmap: Equatable, Sendable {
        public var iova: UInt64
        public var size: UInt64
        public var flags: UInt32
        public init(iova: UInt64, size: UInt64, flags: UInt32) {
            self.iova = iova
            self.size = size
            self.flags = flags
        }
    }

    public struct Region: Sendable {
        public var size: UInt64
        public var offset: UInt64
        public var flags: UInt32
        /// A capability chain (vfio_info_cap_header chain, offsets counted
        /// from the start of vfio_region_info) returned after the fixed
        /// fields when the caller's argsz has room; empty for none.
        public var capabilities: [UInt8]
        public init(size: UInt64, offset: UInt64, flags: UInt32, capabilities: [UInt8] = []) {
            self.size = size
            self.offset = offset
            self.flags = flags
            self.capabilities = capabilities
        }
    }

    /// One VFIO_DEVICE_SET_IRQS as the kernel received it.
    public struct IRQSet: Equatable, Sendable {
        public var index: UInt32
        public var start: UInt32
        public var count: UInt32
        public var flags: UInt32
        /// The eventfd numbers (DATA_EVENTFD) or bool bytes (DATA_BOOL).
        public var eventfds: [Int32]
        public var bools: [UInt8]
    }

    public struct State: Sendable {
        // Filesystem.
        public var nodes: [String: Node] = [:]
        public var openErrors: [String: Int32] = [:]
        public var links: [String: String] = [:]
        public var directories: [String: [String]] = [:]
        public var memoryLock: (soft: UInt64, hard: UInt64)? = (8 << 20, 8 << 20)

        // Descriptors.
        public var nextFD: Int32 = 100
        public var open: [Int32: Handle] = [:]
        public var closed: [Int32] = []
        /// Errors for the next close calls; the descriptor is released anyway, as on Linux.
        public var closeErrors: [Int32] = []

        // Container.
        public var apiVersion = 0
        public var extensions: Set<UInt> = [cvfio_VFIO_TYPE1_IOMMU, cvfio_VFIO_TYPE1v2_IOMMU, cvfio_VFIO_UNMAP_ALL]
        public var iommuSetTo: UInt?
        public var pageSizes: UInt64 = 0x4000_0000 | 0x20_0000 | 0x1000
        public var iovaRanges: [(UInt64, UInt64)]? = [(0, 0xFEDF_FFFF), (0xFEF0_0000, 0xFFFF_FFFF_FFFF)]
        public var dmaAvailable: UInt32? = 65535
        /// When set, GET_INFO copies these bytes verbatim (a hand-built reply).
        public var rawInfoReply: [UInt8]?
        /// When set, GET_INFO always claims to need 8 more bytes than given.
        public var infoNeverFits = false
        public var infoCallSizes: [Int] = []
        public var maps: [Map] = []
        public var mapErrors: [Int32] = []
        public var unmaps: [Unmap] = []
        /// Replies for the next UNMAP_DMA calls: a size written back, or an errno.
        public var unmapReplies: [Result<UInt64, FakeErrno>] = []

        // Groups and devices.
        public var groupFlags: [Int: UInt32] = [:]
        public var groupContainer: [Int: Int32] = [:]
        public var groupDevices: [Int: [String]] = [:]
        public var deviceFlags: UInt32 = UInt32(cvfio_VFIO_DEVICE_FLAGS_PCI | cvfio_VFIO_DEVICE_FLAGS_RESET)
        public var regions: [UInt32: Region] = [:]
        public var deviceMemory = [UInt8](repeating: 0, count: 0x2000)
        public var resets = 0
        /// Interrupt indexes: flags and count; an absent index answers EINVAL
        /// (as vfio-pci does for the error IRQ of a conventional PCI device).
        public var irqs: [UInt32: (flags: UInt32, count: UInt32)] = [0: (0x7, 1), 1: (0x9, 1), 2: (0x9, 0), 4: (0x1, 1)]
        public var irqSets: [IRQSet] = []
        /// Device descriptors (GET_DEVICE_FD and their duplicates) are real
        /// open files (/dev/null), so that they can be passed over SCM_RIGHTS
        /// like the real device's; closed for real when closed.
        public var realDeviceDescriptors = false
        public var realDescriptors: Set<Int32> = []
        /// Largest transfer one pread/pwrite performs, to exercise short I/O.
        public var maximumTransfer = Int.max

        // Interruptions: requests that fail with EINTR this many more times.
        public var interrupts: [UInt: Int] = [:]
        public var requests: [UInt] = []
        /// Descriptors handed out by `duplicate`, in order, with their originals.
        public var duplicates: [(original: Int32, copy: Int32)] = []
    }

    /// A host on which `pci` is in IOMMU group `group`, bound to vfio-pci,
    /// with the container node and the sysfs links VFIO follows from one to
    /// the other, under `paths`.
    public func addAssignableDevice(_ pci: String, group: Int, paths: VFIOPaths) {
        with { s in
            s.nodes[paths.container] = .container
            s.nodes[paths.group(group)] = .group(group)
            s.groupDevices[group, default: []].append(pci)
            let members = paths.groupDevices(group)
            s.directories[members, default: []].append(pci)
            s.links["\(members)/\(pci)/driver"] = "../../../../bus/pci/drivers/vfio-pci"
            let device = paths.sysfs + "/bus/pci/devices/\(pci)"
            s.links[device] = "../../../devices/pci0000:00/0000:00:01.0/\(pci)"
            s.links[device + "/iommu_group"] = "../../../../kernel/iommu_groups/\(group)"
        }
    }

    public struct FakeErrno: Error, Equatable, Sendable {
        public var code: Int32
        public init(code: Int32) { self.code = code }
    }

    public let state = Mutex(State())

    @discardableResult
    public func with<R>(_ body: (inout State) -> R) -> R {
        state.withLock { body(&$0) }
    }

    // MARK: VFIOKernel

    public func open(_ path: String, flags: Int32) -> Int32 {
        state.withLock { s in
            if let code = s.openErrors[path] { return -code }
            guard let node = s.nodes[path] else { return -ENOENT }
            let fd = s.nextFD
            s.nextFD += 1
            switch node {
            case .container: s.open[fd] = .container
            case .group(let n): s.open[fd] = .group(n)
            case .file: s.open[fd] = .file(path)
            }
            return fd
        }
    }

    public func duplicate(_ fd: Int32) -> Int32 {
        state.withLock { s in
            guard let handle = s.open[fd] else { return -EBADF }
            let real: Bool = if case .device = handle { s.realDeviceDescriptors } else { false }
            let copy = Self.allocate(&s, real: real)
            s.open[copy] = handle
            s.duplicates.append((fd, copy))
            return copy
        }
    }

    public func close(_ fd: Int32) -> Int32 {
        state.withLock { s in
            guard let handle = s.open.removeValue(forKey: fd) else { return -EBADF }
            s.closed.append(fd)
            if s.realDescriptors.remove(fd) != nil { _ = Glibc.close(fd) }
            if case .group(let n) = handle, let container = s.groupContainer.removeValue(forKey: n),
               !s.groupContainer.values.contains(container) {
                // Last group out: the kernel releases the container's IOMMU model.
                s.iommuSetTo = nil
            }
            return s.closeErrors.isEmpty ? 0 : -s.closeErrors.removeFirst()
        }
    }

    public func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int {
        state.withLock { s in
            s.requests.append(request)
            if let left = s.interrupts[request], left > 0 {
                s.interrupts[request] = left - 1
                return -Int(EINTR)
            }
            guard let handle = s.open[fd] else { return -Int(EBADF) }
            switch (handle, request) {
            case (.container, cvfio_VFIO_GET_API_VERSION):
                return s.apiVersion
            case (.container, cvfio_VFIO_CHECK_EXTENSION):
                return s.extensions.contains(value) ? 1 : 0
            case (.container, cvfio_VFIO_SET_IOMMU):
                // The kernel needs a group in the container first.
                guard s.groupContainer.values.contains(fd), s.iommuSetTo == nil else { return -Int(EINVAL) }
                guard s.extensions.contains(value) else { return -Int(EINVAL) }
                s.iommuSetTo = value
                return 0
            case (.group(let n), cvfio_VFIO_GROUP_UNSET_CONTAINER):
                guard let container = s.groupContainer.removeValue(forKey: n) else { return -Int(EINVAL) }
                if !s.groupContainer.values.contains(container) { s.iommuSetTo = nil }
                return 0
            case (.device, cvfio_VFIO_DEVICE_RESET):
                s.resets += 1
                return 0
            default:
                return -Int(ENOTTY)
            }
        }
    }

    public func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int {
        state.withLock { s in
            s.requests.append(request)
            if let left = s.interrupts[request], left > 0 {
                s.interrupts[request] = left - 1
                return -Int(EINTR)
            }
            guard let handle = s.open[fd] else { return -Int(EBADF) }
            switch (handle, request) {
            case (.container, cvfio_VFIO_IOMMU_GET_INFO):
                return Self.getInfo(&s, argument)
            case (.container, cvfio_VFIO_IOMMU_MAP_DMA):
                let map = argument.load(as: vfio_iommu_type1_dma_map.self)
                guard map.argsz >= 32 else { return -Int(EINVAL) }
                if !s.mapErrors.isEmpty { return -Int(s.mapErrors.removeFirst()) }
                s.maps.append(Map(iova: map.iova, size: map.size, vaddr: map.vaddr, flags: map.flags))
                return 0
            case (.container, cvfio_VFIO_IOMMU_UNMAP_DMA):
                var unmap = argument.load(as: vfio_iommu_type1_dma_unmap.self)
                guard unmap.argsz >= 24 else { return -Int(EINVAL) }
                s.unmaps.append(Unmap(iova: unmap.iova, size: unmap.size, flags: unmap.flags))
                var written = unmap.size
                if !s.unmapReplies.isEmpty {
                    switch s.unmapReplies.removeFirst() {
                    case .success(let size): written = size
                    case .failure(let e): return -Int(e.code)
                    }
                }
                unmap.size = written
                argument.storeBytes(of: unmap, as: vfio_iommu_type1_dma_unmap.self)
                return 0
            case (.group(let n), cvfio_VFIO_GROUP_GET_STATUS):
                var status = argument.load(as: vfio_group_status.self)
                status.flags = s.groupFlags[n, default: UInt32(cvfio_VFIO_GROUP_FLAGS_VIABLE)]
                if s.groupContainer[n] != nil { status.flags |= UInt32(cvfio_VFIO_GROUP_FLAGS_CONTAINER_SET) }
                argument.storeBytes(of: status, as: vfio_group_status.self)
                return 0
            case (.group(let n), cvfio_VFIO_GROUP_SET_CONTAINER):
                let containerFD = argument.load(as: Int32.self)
                guard s.open[containerFD] == .container else { return -Int(EBADF) }
                guard s.groupContainer[n] == nil else { return -Int(EINVAL) }
                s.groupContainer[n] = containerFD
                return 0
            case (.group(let n), cvfio_VFIO_GROUP_GET_DEVICE_FD):
                let name = String(cString: argument.assumingMemoryBound(to: CChar.self))
                guard s.groupContainer[n] != nil, s.iommuSetTo != nil else { return -Int(EINVAL) }
                guard s.groupDevices[n, default: []].contains(name) else { return -Int(ENODEV) }
                let fd = Self.allocate(&s, real: s.realDeviceDescriptors)
                s.open[fd] = .device(name)
                return Int(fd)
            case (.device, cvfio_VFIO_DEVICE_GET_INFO):
                var info = argument.load(as: vfio_device_info.self)
                info.flags = s.deviceFlags
                info.num_regions = 9
                info.num_irqs = 5
                argument.storeBytes(of: info, as: vfio_device_info.self)
                return 0
            case (.device, cvfio_VFIO_DEVICE_GET_REGION_INFO):
                var info = argument.load(as: vfio_region_info.self)
                guard let region = s.regions[info.index] else { return -Int(EINVAL) }
                let given = Int(info.argsz)
                info.size = region.size
                info.offset = region.offset
                info.flags = region.flags
                info.cap_offset = 0
                if !region.capabilities.isEmpty {
                    info.flags |= UInt32(cvfio_VFIO_REGION_INFO_FLAG_CAPS)
                    let needed = 32 + region.capabilities.count
                    if given >= needed {
                        region.capabilities.withUnsafeBytes { (argument + 32).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                        info.cap_offset = 32
                    }
                    info.argsz = UInt32(needed)
                }
                argument.storeBytes(of: info, as: vfio_region_info.self)
                return 0
            case (.device, cvfio_VFIO_DEVICE_GET_IRQ_INFO):
                var info = argument.load(as: vfio_irq_info.self)
                guard let irq = s.irqs[info.index] else { return -Int(EINVAL) }
                info.flags = irq.flags
                info.count = irq.count
                argument.storeBytes(of: info, as: vfio_irq_info.self)
                return 0
            case (.device, cvfio_VFIO_DEVICE_SET_IRQS):
                let set = argument.load(as: vfio_irq_set.self)
                guard let irq = s.irqs[set.index], set.argsz >= 20 else { return -Int(EINVAL) }
                guard set.count == 0 || UInt64(set.start) + UInt64(set.count) <= UInt64(irq.count) else { return -Int(EINVAL) }
                var call = IRQSet(index: set.index, start: set.start, count: set.count, flags: set.flags, eventfds: [], bools: [])
                if set.flags & UInt32(VFIO_IRQ_SET_DATA_EVENTFD) != 0 {
                    for i in 0..<Int(set.count) { call.eventfds.append((argument + 20).load(fromByteOffset: i * 4, as: Int32.self)) }
                } else if set.flags & UInt32(VFIO_IRQ_SET_DATA_BOOL) != 0 {
                    for i in 0..<Int(set.count) { call.bools.append((argument + 20).load(fromByteOffset: i, as: UInt8.self)) }
                }
                s.irqSets.append(call)
                return 0
            default:
                return -Int(ENOTTY)
            }
        }
    }

    public func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        state.withLock { s in
            let source: [UInt8]
            switch s.open[fd] {
            case .device: source = s.deviceMemory
            case .file(let path):
                guard case .file(let bytes) = s.nodes[path] else { return -Int(EIO) }
                source = bytes
            default: return -Int(EBADF)
            }
            let start = Int(offset)
            guard start < source.count else { return 0 }
            let n = min(buffer.count, source.count - start, s.maximumTransfer)
            source.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: n) }
            return n
        }
    }

    public func pwrite(_ fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int {
        state.withLock { s in
            guard case .device = s.open[fd] else { return -Int(EBADF) }
            let start = Int(offset)
            guard start < s.deviceMemory.count else { return -Int(ENOSPC) }
            let n = min(buffer.count, s.deviceMemory.count - start, s.maximumTransfer)
            for i in 0..<n { s.deviceMemory[start + i] = buffer[i] }
            return n
        }
    }

    public func readLink(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        state.withLock { s in
            guard let target = s.links[path] else { return -Int(ENOENT) }
            let bytes = Array(target.utf8)
            let n = min(bytes.count, buffer.count)
            for i in 0..<n { buffer[i] = bytes[i] }
            return n
        }
    }

    public func directoryEntries(_ path: String, into names: inout [String]) -> Int {
        state.withLock { s in
            guard let entries = s.directories[path] else { return -Int(ENOENT) }
            names = entries
            return 0
        }
    }

    public func memoryLockLimit() -> (soft: UInt64, hard: UInt64)? {
        state.withLock { $0.memoryLock }
    }

    /// A new descriptor number: a real open file when `real`.
    private static func allocate(_ s: inout State, real: Bool) -> Int32 {
        if real {
            let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
            precondition(fd >= 0, "FakeKernel: opening /dev/null failed")
            s.realDescriptors.insert(fd)
            return fd
        }
        let fd = s.nextFD
        s.nextFD += 1
        return fd
    }

    // MARK: GET_INFO, the way type1 answers it

    private static func getInfo(_ s: inout State, _ argument: UnsafeMutableRawPointer) -> Int {
        let given = Int(argument.load(as: UInt32.self))
        s.infoCallSizes.append(given)
        guard given >= 16 else { return -Int(EINVAL) }
        if let raw = s.rawInfoReply {
            let n = min(given, raw.count)
            raw.withUnsafeBytes { argument.copyMemory(from: $0.baseAddress!, byteCount: n) }
            return 0
        }
        if s.infoNeverFits {
            argument.storeBytes(of: UInt32(given + 8), as: UInt32.self)
            argument.storeBytes(of: UInt32(cvfio_VFIO_IOMMU_INFO_PGSIZES | cvfio_VFIO_IOMMU_INFO_CAPS),
                                toByteOffset: 4, as: UInt32.self)
            return 0
        }
        let chain = InfoReply.chain(iovaRanges: s.iovaRanges, dmaAvailable: s.dmaAvailable, startingAt: 24)
        var flags = UInt32(cvfio_VFIO_IOMMU_INFO_PGSIZES)
        if !chain.isEmpty { flags |= UInt32(cvfio_VFIO_IOMMU_INFO_CAPS) }
        argument.storeBytes(of: flags, toByteOffset: 4, as: UInt32.self)
        argument.storeBytes(of: s.pageSizes, toByteOffset: 8, as: UInt64.self)
        guard !chain.isEmpty else { return 0 }
        if given < 24 + chain.count {
            // Too small: report the size needed, no chain (cap_offset stays 0).
            argument.storeBytes(of: UInt32(24 + chain.count), as: UInt32.self)
            if given >= 20 { argument.storeBytes(of: UInt32(0), toByteOffset: 16, as: UInt32.self) }
        } else {
            chain.withUnsafeBytes { (argument + 24).copyMemory(from: $0.baseAddress!, byteCount: chain.count) }
            argument.storeBytes(of: UInt32(24), toByteOffset: 16, as: UInt32.self)
        }
        return 0
    }
}
