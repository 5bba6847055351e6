import CVFIO
import Glibc
import VFIO
import XCTest

final class DeviceTests: XCTestCase {
    private func openDevice(_ fixture: Fixture) throws -> Device {
        fixture.kernel.with { s in
            s.regions[RegionInfo.pciBAR(0)] = .init(size: 0x1000, offset: 0, flags: 7)
            s.regions[RegionInfo.pciConfig] = .init(size: 0x100, offset: 0x1000, flags: 3)
        }
        let (_, group) = try fixture.readyContainer()
        return try group.openDevice(Fixture.device)
    }

    func testInfo() throws {
        let fixture = Fixture()
        let info = try openDevice(fixture).info()
        XCTAssertTrue(info.isPCI)
        XCTAssertTrue(info.supportsReset)
        XCTAssertEqual(info.numRegions, 9)
        XCTAssertEqual(info.numIRQs, 5)
    }

    func testRegionInfo() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        let config = try device.regionInfo(RegionInfo.pciConfig)
        XCTAssertEqual(config, RegionInfo(index: 7, flags: 3, size: 0x100, offset: 0x1000))
        XCTAssertTrue(config.isReadable)
        XCTAssertTrue(config.isWritable)
        XCTAssertFalse(config.supportsMmap)
        XCTAssertTrue(try device.regionInfo(RegionInfo.pciBAR(0)).supportsMmap)
        let error = expectError { try device.regionInfo(RegionInfo.pciBAR(5)) }
        XCTAssertEqual(error?.errno, EINVAL)
        XCTAssertContains(error?.hint, "no region 5")
    }

    func testRegionReadWriteLandsAtTheRegionOffset() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        let config = try device.regionInfo(RegionInfo.pciConfig)
        try device.write(UInt32(0x1234_8086), to: config, at: 0)
        XCTAssertEqual(fixture.kernel.with { Array($0.deviceMemory[0x1000..<0x1004]) }, [0x86, 0x80, 0x34, 0x12])
        XCTAssertEqual(try device.read(UInt16.self, from: config, at: 0), 0x8086)
        XCTAssertEqual(try device.read(UInt16.self, from: config, at: 2), 0x1234)
        XCTAssertEqual(try device.read(config, at: 1, count: 2), [0x80, 0x34])
    }

    func testShortTransfersAreCompleted() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        let bar = try device.regionInfo(RegionInfo.pciBAR(0))
        fixture.kernel.with { $0.maximumTransfer = 3 }
        let bytes: [UInt8] = Array(1...10)
        try device.write(bar, at: 0x10, bytes: bytes)
        XCTAssertEqual(try device.read(bar, at: 0x10, count: 10), bytes)
        XCTAssertEqual(try device.read(UInt64.self, from: bar, at: 0x10), 0x0807_0605_0403_0201)
    }

    func testAccessOutsideTheRegionIsRefusedLocally() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        let config = try device.regionInfo(RegionInfo.pciConfig)
        let error = expectError { try device.read(config, at: 0xFE, count: 4) }
        XCTAssertEqual(error?.errno, 0)
        XCTAssertContains(error?.detail, "outside region 7")
        XCTAssertNotNil(expectError { try device.write(config, at: .max, bytes: [1]) })
        // Nothing was written past the region.
        XCTAssertEqual(fixture.kernel.with { $0.deviceMemory[0x1100] }, 0)
    }

    func testReadPastTheEndOfTheFileIsAnError() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        // A region the fake's backing memory does not fully cover: pread hits EOF.
        let region = RegionInfo(index: 9, flags: 3, size: 0x100, offset: 0x1FF0)
        let error = expectError { try device.read(region, at: 0, count: 0x20) }
        XCTAssertContains(error?.detail, "ended after 16 of 32 bytes")
    }

    func testResetWhenAdvertised() throws {
        let fixture = Fixture()
        try openDevice(fixture).reset()
        XCTAssertEqual(fixture.kernel.with { $0.resets }, 1)
    }

    func testResetWithoutTheFlagIsRefused() throws {
        let fixture = Fixture()
        fixture.kernel.with { $0.deviceFlags = UInt32(cvfio_VFIO_DEVICE_FLAGS_PCI) }
        let error = expectError { try self.openDevice(fixture).reset() }
        XCTAssertEqual(error?.operation, "VFIO_DEVICE_RESET")
        XCTAssertContains(error?.detail, "does not advertise VFIO_DEVICE_FLAGS_RESET")
        XCTAssertEqual(fixture.kernel.with { $0.resets }, 0)
        XCTAssertEqual(fixture.count(cvfio_VFIO_DEVICE_RESET), 0)
    }

    func testCloseDevice() throws {
        let fixture = Fixture()
        let device = try openDevice(fixture)
        try device.close()
        XCTAssertFalse(fixture.kernel.with { $0.open.values.contains(.device(Fixture.device)) })
        XCTAssertEqual(expectError { try device.info() }?.errno, EBADF)
    }
}
