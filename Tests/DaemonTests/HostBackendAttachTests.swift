import Bridge
import CVFIO
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import VTdBridgeTestSupport
import VTdGuest
import Wire
import XCTest
@testable import Daemon

/// Attach, return-fd, detach and close order, in-process, through the type1
/// host backend over a fake kernel: every open, ioctl, dup and close the
/// daemon makes for a device is seen, without /dev/vfio.
final class HostBackendAttachTests: XCTestCase {
    private var directory = ""
    private var daemon: Daemon!
    private let kernel = FakeKernel()
    private let paths = VFIOPaths(deviceDirectory: "/fake/dev/vfio", sysfs: "/fake/sys")
    private let pci = "0000:01:00.0"

    private final class TestLogLevel: LogLevelControl, @unchecked Sendable {
        var level: Logger.Level = .info
        func setLevel(_ level: Logger.Level) { self.level = level }
    }

    override func setUpWithError() throws {
        var template = Array("/tmp/vtdbridge-host-XXXXXX".utf8CString)
        _ = try XCTUnwrap(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }, "mkdtemp failed")
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        kernel.addAssignableDevice(pci, group: 12, paths: paths)
        var config = DaemonConfig(name: "test")
        config.backend = .vfio
        config.vfioDeviceDirectory = paths.deviceDirectory
        config.sysfsRoot = paths.sysfs
        config.stateDirectory = directory
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        daemon = try Daemon(config: config, signals: SignalDescriptor(signals: []), logger: logger, logLevel: TestLogLevel(),
                            kernel: kernel)
    }

    override func tearDown() {
        daemon = nil
        unlink(directory + "/attachments.json")
        rmdir(directory)
    }

    private func handles() -> [FakeKernel.Handle] {
        kernel.with { Array($0.open.values) }
    }

    func testAttachReturnsTheDeviceFDAndDetachClosesInKernelOrder() throws {
        let (result, fds) = daemon.execute(ControlRequest(id: 1, command: .attach,
                                                          arguments: ["host": .string(pci), "guest": "00:03.0", "return-fd": true]))
        let reply = try result.get()
        XCTAssertEqual(reply["backend"], "vfio")
        XCTAssertEqual(reply["group"], 12)
        XCTAssertEqual(reply["device-fd"], true)
        // The VMM's copy is a dup of the device fd, made through the kernel.
        XCTAssertEqual(fds.count, 1)
        let (device, copy) = try XCTUnwrap(kernel.with { $0.duplicates.first })
        XCTAssertEqual(fds.first?.number, copy)
        XCTAssertEqual(kernel.with { $0.open[device] }, .device(pci))
        XCTAssertEqual(kernel.with { $0.iommuSetTo }, cvfio_VFIO_TYPE1v2_IOMMU)
        XCTAssertEqual(Set(handles().map { "\($0)" }), ["container", "group(12)", "device(\"\(pci)\")"])
        // The copy goes with the reply; closing it is the sender's business
        // and leaves the daemon's own descriptors open.
        try fds.first?.close()
        XCTAssertEqual(handles().count, 3)

        // The guest maps a page: the sync's MAP_DMA lands in the container.
        let guest = try GuestFixture()
        _ = daemon.bridge.setMemory(guest.memory)
        _ = daemon.bridge.setRootTable(guest.writer.rootTable)
        _ = daemon.bridge.setTranslationEnabled(true)
        let sid = SourceID("00:03.0")!
        let batch = try guest.writer.attach(sid, domain: 1) + guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        XCTAssertEqual(daemon.bridge.process(batch).report.maps, 1)
        XCTAssertEqual(kernel.with { $0.maps.map(\.iova) }, [0x1000])
        XCTAssertEqual(kernel.with { $0.maps.first?.vaddr }, guest.memory.hostAddress(gpa: 0x10000, size: 0x1000))

        let openBeforeDetach = kernel.with { $0.open }
        let (detached, none) = daemon.execute(ControlRequest(id: 2, command: .detach, arguments: ["guest": "00:03.0"]))
        XCTAssertEqual(try detached.get()["guest"], "00:03.0")
        XCTAssertEqual(none, [])
        // Everything is closed: the device first, then the group (after
        // leaving the container), then the container.
        XCTAssertEqual(handles(), [])
        let closed = kernel.with { $0.closed }
        XCTAssertEqual(closed.count, 4)
        XCTAssertEqual(closed.dropFirst().map { openBeforeDetach[$0] }, [.device(pci), .group(12), .container],
                       "device, then group, then container (drivers/vfio/group.c)")
        let requests = kernel.with { $0.requests }
        XCTAssertTrue(requests.contains(cvfio_VFIO_GROUP_UNSET_CONTAINER))
        // The unmap-all of the detach went to the kernel before any close.
        XCTAssertEqual(kernel.with { $0.unmaps.count }, 1)
    }

    func testAFailedAttachLeavesNothingOpen() throws {
        // Not viable: another device of the group is bound to a host driver.
        kernel.with { $0.groupFlags[12] = 0 }
        let (result, fds) = daemon.execute(ControlRequest(id: 1, command: .attach, arguments: ["host": .string(pci), "guest": "00:03.0"]))
        guard case let .failure(error) = result else { return XCTFail("attached a non-viable group: \(result)") }
        XCTAssertEqual(error.code, .vfioError)
        XCTAssertTrue(error.message.contains("viable"), error.message)
        XCTAssertEqual(fds, [])
        XCTAssertEqual(handles(), [], "the group opened for the check is closed again")
        XCTAssertNil(daemon.devices[SourceID("00:03.0")!])
    }

    func testAnAttachThatFailsAfterTheContainerClosesBoth() throws {
        // The container offers no IOMMU model: SET_IOMMU fails after the
        // group joined it.
        kernel.with { $0.extensions = [] }
        let (result, _) = daemon.execute(ControlRequest(id: 1, command: .attach, arguments: ["host": .string(pci), "guest": "00:03.0"]))
        guard case let .failure(error) = result else { return XCTFail("attached without an IOMMU model: \(result)") }
        XCTAssertEqual(error.code, .vfioError)
        XCTAssertEqual(handles(), [])
        XCTAssertEqual(kernel.with { $0.closed.count }, 2)
    }

    func testStatusShowsTheTypeOneDevice() throws {
        _ = try daemon.execute(ControlRequest(id: 1, command: .attach, arguments: ["host": .string(pci), "guest": "00:03.0"])).0.get()
        let status = try daemon.execute(ControlRequest(id: 2, command: .status, arguments: [:])).0.get()
        XCTAssertEqual(status["backend"], "vfio")
        XCTAssertEqual(status["devices"]?[0]?["group"], 12)
        XCTAssertEqual(status["devices"]?[0]?["dma-available"], 65535, "read from the fake container's GET_INFO")
    }
}
