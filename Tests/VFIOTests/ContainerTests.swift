import CVFIO
import Glibc
import VFIO
import VTd
import VTdBridgeTestSupport
import XCTest

final class ContainerTests: XCTestCase {
    // MARK: open

    func testOpenPrefersType1v2() throws {
        let fixture = Fixture()
        let container = try fixture.openContainer()
        XCTAssertEqual(container.iommuType, .type1v2)
        XCTAssertFalse(container.isIOMMUSet)
        XCTAssertEqual(container.path, "/fake/dev/vfio/vfio")
    }

    func testOpenFallsBackToType1() throws {
        let fixture = Fixture()
        fixture.kernel.with { $0.extensions = [cvfio_VFIO_TYPE1_IOMMU] }
        XCTAssertEqual(try fixture.openContainer().iommuType, .type1)
    }

    func testOpenWithoutType1Fails() {
        let fixture = Fixture()
        fixture.kernel.with { $0.extensions = [] }
        let error = expectError { try fixture.openContainer() }
        XCTAssertEqual(error?.operation, "VFIO_CHECK_EXTENSION")
        XCTAssertContains(error?.hint, "modprobe vfio_iommu_type1")
        // The descriptor opened for the check must not leak.
        XCTAssertEqual(fixture.kernel.with { $0.open.count }, 0)
    }

    func testOpenRejectsOtherAPIVersion() {
        let fixture = Fixture()
        fixture.kernel.with { $0.apiVersion = 1 }
        let error = expectError { try fixture.openContainer() }
        XCTAssertEqual(error?.operation, "VFIO_GET_API_VERSION")
        XCTAssertContains(error?.detail, "kernel reports VFIO API 1")
    }

    func testOpenMissingNodeExplainsWhatToLoad() {
        let fixture = Fixture()
        fixture.kernel.with { $0.nodes = [:] }
        let error = expectError { try fixture.openContainer() }
        XCTAssertEqual(error?.operation, "open")
        XCTAssertEqual(error?.subject, "/fake/dev/vfio/vfio")
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertContains(error?.hint, "no such device")
        XCTAssertContains(error?.hint, "modprobe vfio-pci")
        XCTAssertContains(error?.hint, "bind the device to vfio-pci")
    }

    func testOpenPermissionDenied() {
        let fixture = Fixture()
        fixture.kernel.with { $0.openErrors[fixture.paths.container] = EACCES }
        let error = expectError { try fixture.openContainer() }
        XCTAssertEqual(error?.errno, EACCES)
        XCTAssertContains(error?.hint, "permission denied on /fake/dev/vfio/vfio")
    }

    // MARK: SET_IOMMU

    func testSetIOMMURequiresAGroup() throws {
        let fixture = Fixture()
        let container = try fixture.openContainer()
        let error = expectError { try container.setIOMMU() }
        XCTAssertEqual(error?.operation, "VFIO_SET_IOMMU")
        XCTAssertContains(error?.hint, "attach a group first")
        XCTAssertEqual(fixture.count(cvfio_VFIO_SET_IOMMU), 0)
    }

    func testAttachSetsContainerThenIOMMU() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        XCTAssertTrue(container.isIOMMUSet)
        XCTAssertTrue(container.supportsUnmapAll)
        XCTAssertEqual(container.attachedGroups, [12])
        fixture.kernel.with { s in
            XCTAssertEqual(s.iommuSetTo, cvfio_VFIO_TYPE1v2_IOMMU)
            let setContainer = s.requests.firstIndex(of: cvfio_VFIO_GROUP_SET_CONTAINER)
            let setIOMMU = s.requests.firstIndex(of: cvfio_VFIO_SET_IOMMU)
            XCTAssertNotNil(setContainer)
            XCTAssertNotNil(setIOMMU)
            XCTAssertLessThan(setContainer ?? .max, setIOMMU ?? .min)
        }
        // A second SET_IOMMU is refused before reaching the kernel.
        let error = expectError { try container.setIOMMU() }
        XCTAssertContains(error?.detail, "already set")
        XCTAssertEqual(fixture.count(cvfio_VFIO_SET_IOMMU), 1)
    }

    func testUnmapAllSupportIsAskedAfterSetIOMMU() throws {
        let fixture = Fixture()
        fixture.kernel.with { $0.extensions.remove(cvfio_VFIO_UNMAP_ALL) }
        let (container, _) = try fixture.readyContainer()
        XCTAssertFalse(container.supportsUnmapAll)
    }

    // MARK: GET_INFO

    func testInfoGrowsTheBufferAndParsesCapabilities() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        let info = try container.info()
        XCTAssertEqual(info.pageSizes, 0x4020_1000)
        XCTAssertEqual(info.iovaRanges, [IOVARange(start: 0, last: 0xFEDF_FFFF),
                                         IOVARange(start: 0xFEF0_0000, last: 0xFFFF_FFFF_FFFF)])
        XCTAssertEqual(info.dmaAvailable, 65535)
        // 24 bytes first, then exactly the size the kernel asked for:
        // 24 + (8 + 8 + 2 * 16) + (8 + 8).
        XCTAssertEqual(fixture.kernel.with { $0.infoCallSizes }, [24, 88])
    }

    func testInfoWithoutCapabilitiesNeedsOneCall() throws {
        let fixture = Fixture()
        fixture.kernel.with {
            $0.iovaRanges = nil
            $0.dmaAvailable = nil
        }
        let (container, _) = try fixture.readyContainer()
        let info = try container.info()
        XCTAssertNil(info.iovaRanges)
        XCTAssertNil(info.dmaAvailable)
        XCTAssertEqual(fixture.kernel.with { $0.infoCallSizes }, [24])
    }

    func testInfoGivesUpWhenArgszKeepsGrowing() throws {
        let fixture = Fixture()
        fixture.kernel.with { $0.infoNeverFits = true }
        let (container, _) = try fixture.readyContainer()
        let error = expectError { try container.info() }
        XCTAssertContains(error?.detail, "still growing after 4 attempts")
        XCTAssertEqual(fixture.kernel.with { $0.infoCallSizes }, [24, 32, 40, 48])
    }

    func testInfoRejectsAbsurdArgsz() throws {
        let fixture = Fixture()
        var reply = InfoReply.header(argsz: 64 << 20, flags: 3, pageSizes: 0x1000, capOffset: 0)
        reply.removeLast(4)
        fixture.kernel.with { $0.rawInfoReply = reply }
        let (container, _) = try fixture.readyContainer()
        let error = expectError { try container.info() }
        XCTAssertContains(error?.detail, "asks for a 67108864-byte reply")
    }

    func testInfoPropagatesMalformedChain() throws {
        let fixture = Fixture()
        var reply = InfoReply.header(argsz: 40, flags: 3, pageSizes: 0x1000, capOffset: 24)
        reply += InfoReply.capability(id: 3, next: 24, payload: InfoReply.availPayload(1))
        fixture.kernel.with { $0.rawInfoReply = reply }
        let (container, _) = try fixture.readyContainer()
        let error = expectError { try container.info() }
        XCTAssertContains(error?.detail, "malformed capability chain")
    }

    func testCallsBeforeSetIOMMUAreRefused() throws {
        let fixture = Fixture()
        let container = try fixture.openContainer()
        XCTAssertContains(expectError { try container.info() }?.detail, "no IOMMU model set")
        XCTAssertNotNil(expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x1000, permission: .read) })
        XCTAssertNotNil(expectError { try container.unmap(iova: 0, size: 0x1000) })
        XCTAssertNotNil(expectError { try container.unmapAll() })
        XCTAssertEqual(fixture.count(cvfio_VFIO_IOMMU_MAP_DMA) + fixture.count(cvfio_VFIO_IOMMU_UNMAP_DMA)
                       + fixture.count(cvfio_VFIO_IOMMU_GET_INFO), 0)
    }

    // MARK: MAP_DMA

    func testMapPassesTheRangeAndPermissions() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        try container.map(iova: 0x10_0000, size: 0x20_0000, hostAddress: 0x7F00_0000_0000, permission: .read)
        try container.map(iova: 0x40_0000, size: 0x1000, hostAddress: 0x7F00_1000_0000, permission: .readWrite)
        XCTAssertEqual(fixture.kernel.with { $0.maps }, [
            .init(iova: 0x10_0000, size: 0x20_0000, vaddr: 0x7F00_0000_0000, flags: 1),
            .init(iova: 0x40_0000, size: 0x1000, vaddr: 0x7F00_1000_0000, flags: 3),
        ])
    }

    /// The one permission type reaches the kernel as exactly the MAP_DMA
    /// flags of <linux/vfio.h>, which are also its own (VT-d) bits.
    func testMapDMAFlagsOfEachPermission() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        let read = UInt32(cvfio_VFIO_DMA_MAP_FLAG_READ), write = UInt32(cvfio_VFIO_DMA_MAP_FLAG_WRITE)
        let cases: [(DMAPermission, UInt32)] = [(.read, read), (.write, write), (.readWrite, read | write), ([], 0)]
        for (i, (permission, flags)) in cases.enumerated() {
            XCTAssertEqual(permission.mapDMAFlags, flags, "\(permission)")
            XCTAssertEqual(UInt32(permission.rawValue), flags, "\(permission): the VT-d bits equal the VFIO flags")
            try container.map(iova: UInt64(i) << 12, size: 0x1000, hostAddress: 0x1000, permission: permission)
        }
        XCTAssertEqual(fixture.kernel.with { $0.maps.map(\.flags) }, [1, 2, 3, 0])
    }

    func testMapRetriesEINTR() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.interrupts[cvfio_VFIO_IOMMU_MAP_DMA] = 2 }
        try container.map(iova: 0, size: 0x1000, hostAddress: 0x1000, permission: .write)
        XCTAssertEqual(fixture.count(cvfio_VFIO_IOMMU_MAP_DMA), 3)
        XCTAssertEqual(fixture.kernel.with { $0.maps.count }, 1)
    }

    func testMapENOMEMExplainsMemlock() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with {
            $0.mapErrors = [ENOMEM]
            $0.memoryLock = (64 << 10, 8 << 20)
        }
        let error = expectError {
            try container.map(iova: 0x1000, size: 0x10_0000, hostAddress: 0x2000, permission: .readWrite)
        }
        XCTAssertEqual(error?.operation, "VFIO_IOMMU_MAP_DMA")
        XCTAssertEqual(error?.errno, ENOMEM)
        XCTAssertContains(error?.detail, "iova 0x1000 size 0x100000 host 0x2000 rw")
        XCTAssertContains(error?.hint, "RLIMIT_MEMLOCK (soft 64 KiB, hard 8 MiB)")
        XCTAssertContains(error?.hint, "LimitMEMLOCK=")
        XCTAssertContains(error?.hint, "ulimit -l")
    }

    func testMapENOMEMWithUnlimitedMemlock() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with {
            $0.mapErrors = [ENOMEM]
            $0.memoryLock = (.max, .max)
        }
        let error = expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x2000, permission: .read) }
        XCTAssertContains(error?.hint, "soft unlimited, hard unlimited")
    }

    func testMapENOSPCExplainsTheEntryLimit() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with {
            $0.dmaAvailable = 3
            $0.nodes[fixture.paths.dmaEntryLimit] = .file(Array("4096\n".utf8))
        }
        _ = try container.info()
        fixture.kernel.with { $0.mapErrors = [ENOSPC] }
        let error = expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x2000, permission: .read) }
        XCTAssertEqual(error?.errno, ENOSPC)
        XCTAssertContains(error?.hint, "vfio_iommu_type1.dma_entry_limit, default 65535, now 4096")
        XCTAssertContains(error?.hint, "last reported 3 mappings available")
        // The sysfs file opened for the hint was closed again.
        XCTAssertFalse(fixture.kernel.with { $0.open.values.contains(.file(fixture.paths.dmaEntryLimit)) })
    }

    func testMapENOSPCWithoutSysfsOrInfo() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.mapErrors = [ENOSPC] }
        let error = expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x2000, permission: .read) }
        XCTAssertContains(error?.hint, "default 65535)")
        XCTAssertFalse(error?.hint?.contains("last reported") ?? true)
    }

    func testMapEEXISTNamesOverlap() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.mapErrors = [EEXIST] }
        let error = expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x2000, permission: .read) }
        XCTAssertContains(error?.hint, "overlapping mapping already exists")
    }

    // MARK: UNMAP_DMA

    func testUnmapExact() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        try container.unmap(iova: 0x10_0000, size: 0x20_0000)
        XCTAssertEqual(fixture.kernel.with { $0.unmaps }, [.init(iova: 0x10_0000, size: 0x20_0000, flags: 0)])
    }

    func testShortUnmapIsAnError() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.unmapReplies = [.success(0x1000)] }
        let error = expectError { try container.unmap(iova: 0x10_0000, size: 0x2000) }
        XCTAssertEqual(error?.operation, "VFIO_IOMMU_UNMAP_DMA")
        XCTAssertEqual(error?.errno, 0)
        XCTAssertContains(error?.detail, "kernel unmapped 4096 bytes of 8192")
    }

    func testLongUnmapIsAnError() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.unmapReplies = [.success(0x4000)] }
        let error = expectError { try container.unmap(iova: 0, size: 0x2000) }
        XCTAssertContains(error?.detail, "kernel unmapped 16384 bytes of 8192")
    }

    func testUnmapEINVALExplainsBisection() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        for code in [EINVAL, EBUSY] {
            fixture.kernel.with { $0.unmapReplies = [.failure(.init(code: code))] }
            let error = expectError { try container.unmap(iova: 0x1000, size: 0x1000) }
            XCTAssertEqual(error?.errno, code)
            XCTAssertContains(error?.hint, "bisects an existing mapping")
            XCTAssertContains(error?.hint, "unaligned")
        }
    }

    func testUnmapAllWithTheExtension() throws {
        let fixture = Fixture()
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.unmapReplies = [.success(0x30_0000)] }
        XCTAssertEqual(try container.unmapAll(), 0x30_0000)
        XCTAssertEqual(fixture.kernel.with { $0.unmaps },
                       [.init(iova: 0, size: 0, flags: UInt32(cvfio_VFIO_DMA_UNMAP_FLAG_ALL))])
    }

    func testUnmapAllWithoutTheExtensionUsesTwoHalves() throws {
        let fixture = Fixture()
        fixture.kernel.with { $0.extensions.remove(cvfio_VFIO_UNMAP_ALL) }
        let (container, _) = try fixture.readyContainer()
        fixture.kernel.with { $0.unmapReplies = [.success(0x1000), .success(0x2000)] }
        XCTAssertEqual(try container.unmapAll(), 0x3000)
        XCTAssertEqual(fixture.kernel.with { $0.unmaps },
                       [.init(iova: 0, size: 1 << 63, flags: 0), .init(iova: 1 << 63, size: 1 << 63, flags: 0)])
    }

    // MARK: descriptor ownership

    func testCloseReleasesOnceAndLaterCallsFail() throws {
        let fixture = Fixture()
        let (container, group) = try fixture.readyContainer()
        try container.close()
        let error = expectError { try container.map(iova: 0, size: 0x1000, hostAddress: 0x1000, permission: .read) }
        XCTAssertEqual(error?.errno, EBADF)
        XCTAssertEqual(expectError { try container.close() }?.errno, EBADF)
        XCTAssertEqual(fixture.kernel.with { $0.closed.count }, 1)
        withExtendedLifetime(group) {}
    }

    func testDroppingTheContainerClosesIt() throws {
        let fixture = Fixture()
        do {
            _ = try fixture.openContainer()
        }
        fixture.kernel.with { s in
            XCTAssertEqual(s.closed.count, 1)
            XCTAssertTrue(s.open.isEmpty)
        }
    }
}
