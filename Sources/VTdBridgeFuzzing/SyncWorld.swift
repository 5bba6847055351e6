import Bridge
import VFIO
import VTd

/// The guest RAM every sync run uses, mapped once per process: two images of
/// the same layout at different host addresses (so that a new memory table
/// moves every mapping), each with two regions:
///
/// - A: GPA 0, 256 KiB (64 pages), where tables usually live;
/// - B: GPA 2 MiB, 2 MiB (512 pages), so that a 2 MiB leaf can be mapped.
///
/// A run writes guest memory only through `poke`, which writes both images
/// and remembers the page, so the next run starts from zeros at the cost of
/// the pages actually touched.
final class SyncWorld: @unchecked Sendable {
    // @unchecked: libFuzzer runs one input at a time on one thread, and so
    // does the regression test; nothing else touches this.
    static let shared = SyncWorld()

    static let regionA: (gpa: UInt64, size: UInt64) = (0, 256 << 10)
    static let regionB: (gpa: UInt64, size: UInt64) = (2 << 20, 2 << 20)
    /// Pages a one-byte selector can name: 0..<64 are region A's pages,
    /// 64..<256 the first 192 pages of region B.
    static let selectablePages = 256

    let images: [GuestRAM]
    /// The walk-cost bound's memo tables (`SyncRun.afford`).
    let cost = WalkCost()
    private var dirty = [Bool](repeating: false, count: SyncWorld.selectablePages)
    private var dirtyList: [Int] = []

    private init() {
        do {
            images = try (0 ..< 2).map { _ in
                try GuestRAM([
                    GuestRAMRegionSpec(gpa: Self.regionA.gpa, size: Self.regionA.size, backing: .anonymous),
                    GuestRAMRegionSpec(gpa: Self.regionB.gpa, size: Self.regionB.size, backing: .anonymous),
                ])
            }
        } catch {
            fatalError("fuzz harness: cannot map its guest RAM: \(error)")
        }
    }

    /// The GPA of the page a selector byte names.
    static func pageGPA(_ selector: UInt8) -> UInt64 {
        selector < 64 ? regionA.gpa + UInt64(selector) << 12 : regionB.gpa + UInt64(selector - 64) << 12
    }

    /// Which of the images `memory` is, for messages.
    func describe(_ memory: GuestRAM?) -> String {
        guard let memory else { return "none" }
        return images.firstIndex { $0 === memory }.map { "image \($0)" } ?? "another memory"
    }

    /// Writes `words` into the page `selector` names, from word `index`,
    /// wrapping inside the page, in both images.
    func poke(page selector: UInt8, index: Int, words: [UInt64]) {
        let gpa = Self.pageGPA(selector)
        if !dirty[Int(selector)] {
            dirty[Int(selector)] = true
            dirtyList.append(Int(selector))
        }
        for image in images {
            guard let page = image.mutableTablePage(at: gpa) else { fatalError("fuzz harness: page \(selector) is not in its RAM") }
            for (k, word) in words.enumerated() { page[(index + k) & 511] = word.littleEndian }
        }
    }

    /// Zeroes every page written since the last reset.
    func reset() {
        for selector in dirtyList {
            for image in images {
                image.mutableTablePage(at: Self.pageGPA(UInt8(selector)))!.update(repeating: 0, count: 512)
            }
            dirty[selector] = false
        }
        dirtyList.removeAll(keepingCapacity: true)
    }
}

/// A DMA backend that holds mappings with type1v2 semantics and records an
/// invariant violation for any call the bridge must never make:
///
/// - a MAP whose IOVA, size or host address is not page-aligned, or whose
///   IOVA range wraps;
/// - a MAP whose host range [hostAddress, hostAddress + size) is not wholly
///   inside one region of the guest RAM currently installed (or any MAP
///   while no guest RAM is installed);
/// - a MAP that overlaps a mapping it holds;
/// - an UNMAP that does not name exactly one mapping it holds (same IOVA and
///   same size).
///
/// It can also refuse calls on purpose (failure injection) with a kernel
/// errno, to check that the shadow follows only what the "kernel" accepted.
final class CheckingBackend: DMABackend {
    struct Mapping: Equatable {
        var iova: UInt64
        var size: UInt64
        var hostAddress: UInt64
        var permission: DMAPermission
    }

    unowned let run: SyncRun
    let info: IOMMUInfo
    /// Whether this is a backend of the bridge under test: failure injection
    /// and the report's counts apply (not to a reference bridge's).
    let injects: Bool
    let name: String
    /// In IOVA order, disjoint.
    private(set) var mappings: [Mapping] = []

    init(run: SyncRun, info: IOMMUInfo, injects: Bool, name: String) {
        self.run = run
        self.info = info
        self.injects = injects
        self.name = name
    }

    func limits() throws(VFIOError) -> IOMMUInfo { info }

    /// Index of the first mapping whose IOVA is at or above `iova`.
    private func lowerBound(_ iova: UInt64) -> Int {
        var lo = 0, hi = mappings.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if mappings[mid].iova < iova { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private func refuse(_ op: String, _ detail: String, errno: Int32) -> VFIOError {
        VFIOError(operation: op, subject: "fuzz backend \(name)", errno: errno, detail: detail)
    }

    func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        let what = "\(name): MAP iova \(hex(iova)) size \(hex(size)) host \(hex(hostAddress)) perm \(permission.rawValue)"
        let (end, wraps) = iova.addingReportingOverflow(size)
        if size == 0 || size & 0xfff != 0 || iova & 0xfff != 0 || hostAddress & 0xfff != 0 || wraps {
            run.violate("\(what): not page-aligned, empty, or wrapping")
            throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: 22)
        }
        if permission.isEmpty || permission.rawValue & ~3 != 0 {
            run.violate("\(what): permission is not read, write or both")
            throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: 22)
        }
        guard let memory = run.installedMemory else {
            run.violate("\(what): no guest RAM is installed, nothing may be mapped")
            throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: 14)
        }
        let inside = memory.regions.contains { r in
            hostAddress >= r.hostAddress && hostAddress - r.hostAddress <= r.size && size <= r.size - (hostAddress - r.hostAddress)
        }
        if !inside {
            run.violate("\(what): host range is not inside one guest RAM region (\(memory.regions.map { "[\(hex($0.hostAddress)), +\(hex($0.size))]" }.joined(separator: ", ")))")
            throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: 14)
        }
        let at = lowerBound(iova)
        if (at < mappings.count && mappings[at].iova < end) || (at > 0 && mappings[at - 1].iova &+ mappings[at - 1].size > iova) {
            let other = at < mappings.count && mappings[at].iova < end ? mappings[at] : mappings[at - 1]
            run.violate("\(what): overlaps the mapping at \(hex(other.iova)) size \(hex(other.size))")
            throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: 17)
        }
        if injects, let errno = run.injectedFailure() { throw refuse("VFIO_IOMMU_MAP_DMA", what, errno: errno) }
        mappings.insert(Mapping(iova: iova, size: size, hostAddress: hostAddress, permission: permission), at: at)
        if injects { run.successfulMaps += 1 }
    }

    func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        let what = "\(name): UNMAP iova \(hex(iova)) size \(hex(size))"
        let at = lowerBound(iova)
        guard at < mappings.count, mappings[at].iova == iova, mappings[at].size == size else {
            let held = at < mappings.count && mappings[at].iova == iova ? "holds size \(hex(mappings[at].size)) there" : "holds no mapping at that IOVA"
            run.violate("\(what): does not name one whole mapping; the backend \(held)")
            throw refuse("VFIO_IOMMU_UNMAP_DMA", what, errno: 22)
        }
        if injects, let errno = run.injectedFailure() { throw refuse("VFIO_IOMMU_UNMAP_DMA", what, errno: errno) }
        mappings.remove(at: at)
        if injects { run.successfulUnmaps += 1 }
    }

    func unmapAll() throws(VFIOError) {
        if injects, let errno = run.injectedFailure() { throw refuse("VFIO_IOMMU_UNMAP_DMA", "\(name): unmap all", errno: errno) }
        mappings.removeAll()
        if injects { run.successfulUnmaps += 1 }
    }

    /// The bridge never calls this (only journal recovery does, which the
    /// fuzzer does not drive): any call is a violation.
    func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        run.violate("\(name): unmapRange(\(hex(iova)), \(hex(size))) outside journal recovery")
        throw refuse("VFIO_IOMMU_UNMAP_DMA", "\(name): unexpected unmapRange", errno: 22)
    }
}
