import CGuestRAMGuard
import Glibc
import Posix
import VTd

/// Where one region of guest RAM comes from.
public enum GuestRAMBacking: Sendable, Equatable {
    /// A file descriptor shared by the VMM (memfd, hugetlbfs, /dev/shm file),
    /// at a byte offset. The descriptor is only borrowed: its owner keeps it
    /// (and closes it when it likes); the mapping outlives it.
    case fileDescriptor(FileDescriptor, offset: UInt64)
    /// A file by path (a RAM image or a live shared-memory file), at an offset.
    case path(String, offset: UInt64)
    /// A fresh zero-filled memfd, for the simulator and tests.
    case anonymous
}

/// One region of guest-physical address space backed by host memory.
public struct GuestRAMRegionSpec: Sendable, Equatable {
    public var gpa: UInt64
    public var size: UInt64
    public var backing: GuestRAMBacking

    public init(gpa: UInt64, size: UInt64, backing: GuestRAMBacking) {
        self.gpa = gpa
        self.size = size
        self.backing = backing
    }
}

/// Why a guest memory table was refused.
public struct GuestRAMError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var errno: Int32
    public init(_ message: String, errno: Int32 = 0) {
        self.message = message
        self.errno = errno
    }
    /// A failed system call on the way to mapping `what`.
    init(_ what: String, _ error: SystemError) {
        self.init("\(what): \(SystemError(call: error.call, errno: 0, subject: error.subject, detail: error.detail))",
                  errno: error.errno)
    }
    public var description: String {
        errno == 0 ? message : "\(message): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The VM's guest RAM, mapped MAP_SHARED into this process.
///
/// It is the one place where a guest-physical address becomes a host address,
/// and it refuses every range that is not wholly inside one region. That is
/// what keeps an untrusted guest from steering a DMA mapping at host memory
/// outside its own RAM, whatever its page tables say.
public final class GuestRAM: GuestMemoryWriter, @unchecked Sendable {
    // @unchecked: the regions are immutable after init; the bytes behind them
    // are shared with the guest and read with plain aligned loads, as hardware
    // reads the tables.

    public struct Region: Sendable, Equatable {
        public let gpa: UInt64
        public let size: UInt64
        /// Host virtual address of the region's first byte.
        public let hostAddress: UInt64
        public var end: UInt64 { gpa + size }
    }

    public let regions: [Region]
    public let writable: Bool
    /// Regions this table no longer has because their backing file shrank
    /// under us (see `GuestRAMGuard`): GPAs in them are not guest RAM any
    /// more. Kept for reports; a new memory table starts with none.
    public let lostRegions: [LostRegion]

    /// A region dropped because reading it raised SIGBUS.
    public struct LostRegion: Sendable, Equatable, CustomStringConvertible {
        public let gpa: UInt64
        public let size: UInt64
        /// Offset into the region of the first page that faulted.
        public let faultOffset: UInt64
        public var end: UInt64 { gpa + size }
        public var description: String {
            "guest RAM region [0x\(String(gpa, radix: 16)), 0x\(String(end, radix: 16))) is gone: reading it at offset 0x\(String(faultOffset, radix: 16)) raised SIGBUS, so the VMM shrank or removed its backing file; nothing in it is mapped until the VMM sends a memory table whose files stay whole (a memfd sealed with F_SEAL_SHRINK)"
        }
    }

    /// Maps every region. Regions must be 4 KiB-aligned, non-empty and must
    /// not overlap; a file must be long enough for its region.
    ///
    /// A region whose backing is the same file at the same offset as a region
    /// of `previous` (same GPA, size and access) reuses that mapping instead
    /// of mapping the file again. A reconnecting VMM re-sends the memfd it
    /// sent before; with the same host addresses, every mapping the daemon
    /// holds stays valid and nothing is remapped.
    public init(_ specs: [GuestRAMRegionSpec], writable: Bool = true, reusing previous: GuestRAM? = nil) throws(GuestRAMError) {
        let sorted = specs.sorted { $0.gpa < $1.gpa }
        for (i, spec) in sorted.enumerated() {
            let where_ = "region \(i) (gpa 0x\(String(spec.gpa, radix: 16)), size 0x\(String(spec.size, radix: 16)))"
            guard spec.size > 0, spec.gpa & 0xfff == 0, spec.size & 0xfff == 0 else {
                throw GuestRAMError("\(where_): gpa and size must be non-zero multiples of 4 KiB")
            }
            guard spec.gpa.addingReportingOverflow(spec.size).overflow == false else {
                throw GuestRAMError("\(where_): gpa + size overflows 64 bits")
            }
            if i > 0, sorted[i - 1].gpa + sorted[i - 1].size > spec.gpa {
                throw GuestRAMError("\(where_) overlaps the region before it; guest RAM regions must be disjoint")
            }
        }
        var mapped: [Region] = []
        var owners: [RegionMapping] = []
        for spec in sorted {
            // On failure the mappings made so far are released with `owners`.
            let mapping = try Self.mapRegion(spec, writable: writable, previous: previous)
            owners.append(mapping)
            mapped.append(Region(gpa: spec.gpa, size: spec.size, hostAddress: UInt64(UInt(bitPattern: mapping.base))))
        }
        regions = mapped
        mappings = owners
        self.writable = writable
        lostRegions = []
    }

    private init(regions: [Region], mappings: [RegionMapping], writable: Bool, lostRegions: [LostRegion]) {
        self.regions = regions
        self.mappings = mappings
        self.writable = writable
        self.lostRegions = lostRegions
    }

    /// Indices of the regions whose mapping a SIGBUS replaced since it was
    /// made: their contents now read as zero and are not the guest's.
    public var regionsLost: [Int] {
        mappings.indices.filter { mappings[$0].isLost }
    }

    /// This table without the regions in `regionsLost`, which are recorded
    /// in `lostRegions`; nil when none was lost. The other regions keep
    /// their mappings, so nothing mapped from them changes host address.
    public func removingLostRegions() -> GuestRAM? {
        // The common case first, without allocating: a load per region.
        guard mappings.contains(where: { $0.isLost }) else { return nil }
        let lost = regionsLost
        guard !lost.isEmpty else { return nil }
        var keptRegions: [Region] = []
        var keptMappings: [RegionMapping] = []
        var gone = lostRegions
        for i in regions.indices {
            if lost.contains(i) {
                gone.append(LostRegion(gpa: regions[i].gpa, size: regions[i].size, faultOffset: mappings[i].faultOffset))
            } else {
                keptRegions.append(regions[i])
                keptMappings.append(mappings[i])
            }
        }
        return GuestRAM(regions: keptRegions, mappings: keptMappings, writable: writable, lostRegions: gone)
    }

    /// The lost region holding `gpa`, if any (for fault details).
    public func lostRegion(containing gpa: UInt64) -> LostRegion? {
        lostRegions.first { gpa >= $0.gpa && gpa - $0.gpa < $0.size }
    }

    /// The mmaps behind `regions`, shared with a later table that reuses them.
    let mappings: [RegionMapping]

    private static func mapRegion(_ spec: GuestRAMRegionSpec, writable: Bool, previous: GuestRAM?) throws(GuestRAMError) -> RegionMapping {
        let gpaText = "guest RAM region at gpa 0x\(String(spec.gpa, radix: 16))"
        // A descriptor opened here is closed when `file` goes, after mmap has
        // taken its own reference; a borrowed one stays with its owner.
        let file: FileDescriptor
        let offset: UInt64
        do throws(SystemError) {
            switch spec.backing {
            case let .fileDescriptor(descriptor, off):
                file = descriptor
                offset = off
            case let .path(path, off):
                file = try FileDescriptor.open(path, flags: writable ? O_RDWR : O_RDONLY)
                offset = off
            case .anonymous:
                file = try FileDescriptor.memoryFile(name: "vtd-bridge guest RAM", size: spec.size)
                offset = 0
            }
        } catch {
            throw GuestRAMError(gpaText, error)
        }
        guard offset & 0xfff == 0 else {
            throw GuestRAMError("\(gpaText): file offset 0x\(String(offset, radix: 16)) is not 4 KiB-aligned")
        }
        let status: FileStatus
        do { status = try file.status() } catch { throw GuestRAMError(gpaText, error) }
        // A regular file (or memfd) must cover the region, or touching the
        // tail would SIGBUS the daemon. Devices (e.g. /dev/mem-like) report 0.
        if status.kind == .regular, UInt64(status.size) < offset + spec.size {
            throw GuestRAMError("\(gpaText): backing file is \(status.size) bytes, but offset 0x\(String(offset, radix: 16)) + size 0x\(String(spec.size, radix: 16)) is needed")
        }
        let identity = RegionMapping.Identity(gpa: spec.gpa, size: spec.size, device: status.device, inode: status.inode,
                                              offset: offset, writable: writable)
        // A lost mapping reads zeros now: never reuse it.
        if let reused = previous?.mappings.first(where: { $0.identity == identity && !$0.isLost }) {
            return reused
        }
        guard let length = Int(exactly: spec.size) else {
            throw GuestRAMError("\(gpaText): \(spec.size) bytes do not fit this address space")
        }
        let prot = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let base: UnsafeMutableRawPointer
        do { base = try file.mapShared(length: length, offset: offset, writable: writable) } catch { throw GuestRAMError(gpaText, error) }
        // Guarded from here on: the VMM can shrink the file at any moment.
        GuestRAMGuard.install()
        let slot = vtdb_ram_guard_register(base, length, prot)
        guard slot >= 0 else {
            try? SharedMapping.unmap(base, length: length)
            throw GuestRAMError("\(gpaText): every SIGBUS guard slot is taken (1024 guest RAM mappings alive)", errno: -slot)
        }
        return RegionMapping(base: base, identity: identity, guardSlot: slot)
    }

    /// The region holding `gpa`, if any.
    @inlinable
    public func regionIndex(containing gpa: UInt64) -> Int? {
        // Guest RAM has a handful of regions (below and above the PCI hole);
        // a linear scan beats a binary search at that size.
        for i in regions.indices where gpa >= regions[i].gpa && gpa - regions[i].gpa < regions[i].size {
            return i
        }
        return nil
    }

    /// The host address of [gpa, gpa + size) when the range lies wholly inside
    /// one region; nil otherwise (outside RAM, or straddling two regions).
    @inlinable
    public func hostAddress(gpa: UInt64, size: UInt64) -> UInt64? {
        guard size > 0, let i = regionIndex(containing: gpa) else { return nil }
        let r = regions[i]
        guard size <= r.size - (gpa - r.gpa) else { return nil }
        return r.hostAddress + (gpa - r.gpa)
    }

    /// The guest-physical address of host range [host, host + size) when it
    /// lies wholly inside one region's mapping; the inverse of
    /// `hostAddress(gpa:size:)`, for reports.
    public func gpa(hostAddress host: UInt64, size: UInt64) -> UInt64? {
        for r in regions where host >= r.hostAddress && host - r.hostAddress < r.size && size <= r.size - (host - r.hostAddress) {
            return r.gpa + (host - r.hostAddress)
        }
        return nil
    }

    public func tablePage(at gpa: UInt64) -> UnsafePointer<UInt64>? {
        guard gpa & 0xfff == 0, let host = hostAddress(gpa: gpa, size: 4096) else { return nil }
        return UnsafePointer(bitPattern: UInt(host))
    }

    public func mutableTablePage(at gpa: UInt64) -> UnsafeMutablePointer<UInt64>? {
        guard writable, gpa & 0xfff == 0, let host = hostAddress(gpa: gpa, size: 4096) else { return nil }
        return UnsafeMutablePointer(bitPattern: UInt(host))
    }

    /// Copies bytes out of guest RAM; nil when the range is not wholly in one region.
    public func read(gpa: UInt64, count: Int) -> [UInt8]? {
        guard let host = hostAddress(gpa: gpa, size: UInt64(count)) else { return nil }
        return Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(host)), count: count))
    }

    /// Copies bytes into guest RAM; false when the range is not wholly in one region.
    @discardableResult
    public func write(gpa: UInt64, bytes: [UInt8]) -> Bool {
        guard writable, let host = hostAddress(gpa: gpa, size: UInt64(bytes.count)),
              let p = UnsafeMutableRawPointer(bitPattern: UInt(host)) else { return false }
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return true
    }

    public var totalSize: UInt64 { regions.reduce(0) { $0 + $1.size } }
}

/// One mmap of guest RAM, unmapped when the last table using it goes.
final class RegionMapping: @unchecked Sendable {
    // @unchecked: immutable after init; the bytes are the guest's.
    struct Identity: Equatable {
        var gpa: UInt64
        var size: UInt64
        var device: UInt64
        var inode: UInt64
        var offset: UInt64
        var writable: Bool
    }

    let base: UnsafeMutableRawPointer
    let identity: Identity
    /// Its slot in the SIGBUS guard.
    let guardSlot: Int32

    init(base: UnsafeMutableRawPointer, identity: Identity, guardSlot: Int32) {
        self.base = base
        self.identity = identity
        self.guardSlot = guardSlot
    }

    /// A SIGBUS replaced it with zero-filled memory.
    var isLost: Bool { vtdb_ram_guard_lost(guardSlot) != 0 }

    /// Where in it the first SIGBUS hit.
    var faultOffset: UInt64 { vtdb_ram_guard_fault_offset(guardSlot) }

    deinit {
        // Unguarded first: once unmapped, the range may be someone else's.
        vtdb_ram_guard_unregister(guardSlot)
        // munmap of exactly what mapShared returned cannot fail; nothing
        // could be done about it in deinit anyway.
        try? SharedMapping.unmap(base, length: Int(identity.size))
    }
}
