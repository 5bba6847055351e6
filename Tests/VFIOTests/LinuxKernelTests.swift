import Foundation
import Glibc
import Logging
import VFIO
import XCTest

/// The production kernel against the real filesystem, and Container.open on
/// this host, which may or may not have VFIO.
final class LinuxKernelTests: XCTestCase {
    private let kernel = LinuxVFIOKernel()
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("vfio-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testOpenMissingFile() {
        XCTAssertEqual(kernel.open(directory + "/missing", flags: O_RDONLY), -ENOENT)
    }

    func testPreadPwriteAndClose() throws {
        let path = directory + "/data"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data([0, 0, 0, 0, 0, 0])))
        let fd = kernel.open(path, flags: O_RDWR | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual([UInt8]([9, 8]).withUnsafeBytes { kernel.pwrite(fd, from: $0, at: 2) }, 2)
        var back = [UInt8](repeating: 0xFF, count: 6)
        XCTAssertEqual(back.withUnsafeMutableBytes { kernel.pread(fd, into: $0, at: 0) }, 6)
        XCTAssertEqual(back, [0, 0, 9, 8, 0, 0])
        // A regular file has no VFIO ioctls.
        var dummy: UInt64 = 0
        XCTAssertEqual(kernel.ioctl(fd, 0x3B70, &dummy), -Int(ENOTTY))
        XCTAssertEqual(kernel.close(fd), 0)
        XCTAssertEqual(kernel.close(fd), -EBADF)
    }

    func testReadLinkAndDirectoryEntries() throws {
        try FileManager.default.createDirectory(atPath: directory + "/devices", withIntermediateDirectories: false)
        for name in ["0000:01:00.1", "0000:01:00.0"] {
            try FileManager.default.createSymbolicLink(atPath: "\(directory)/devices/\(name)",
                                                       withDestinationPath: "../../../bus/pci/drivers/vfio-pci")
        }
        var names: [String] = ["stale"]
        XCTAssertEqual(kernel.directoryEntries(directory + "/devices", into: &names), 0)
        XCTAssertEqual(names, ["0000:01:00.0", "0000:01:00.1"])
        XCTAssertEqual(kernel.directoryEntries(directory + "/none", into: &names), -Int(ENOENT))

        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { kernel.readLink(directory + "/devices/0000:01:00.0", into: $0) }
        XCTAssertEqual(String(decoding: buffer[..<n], as: UTF8.self), "../../../bus/pci/drivers/vfio-pci")
    }

    func testMemoryLockLimitIsReadable() throws {
        let limit = try XCTUnwrap(kernel.memoryLockLimit())
        XCTAssertLessThanOrEqual(limit.soft, limit.hard)
    }

    func testGroupNumberThroughARealSysfsTree() throws {
        // A miniature sysfs: bus/pci/devices/ADDR -> ../../../devices/ADDR,
        // whose iommu_group links to kernel/iommu_groups/42.
        let sys = directory + "/sys"
        let fm = FileManager.default
        try fm.createDirectory(atPath: sys + "/devices/0000:03:00.0", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: sys + "/kernel/iommu_groups/42/devices", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: sys + "/bus/pci/devices", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: sys + "/bus/pci/devices/0000:03:00.0",
                                  withDestinationPath: "../../../devices/0000:03:00.0")
        try fm.createSymbolicLink(atPath: sys + "/devices/0000:03:00.0/iommu_group",
                                  withDestinationPath: "../../kernel/iommu_groups/42")
        let paths = VFIOPaths(deviceDirectory: directory + "/dev", sysfs: sys)
        XCTAssertEqual(try Group.groupNumber(of: PCIAddress("03:00.0")!, paths: paths, kernel: kernel), 42)
        // The group node does not exist here: open reports it with the hint.
        let error = expectError {
            try Group.open(pciAddress: "03:00.0", paths: paths, kernel: kernel, logger: Logger(label: "t"))
        }
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertEqual(error?.subject, directory + "/dev/42")
        XCTAssertContains(error?.hint, "group 42 is not present")
    }

    func testContainerOpenOnMissingNode() {
        let paths = VFIOPaths(deviceDirectory: directory + "/no-vfio-here")
        let error = expectError { try Container.open(paths: paths, logger: Logger(label: "t")) }
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertEqual(error?.operation, "open")
        XCTAssertContains(error?.description, "no such device")
        XCTAssertContains(error?.description, "modprobe vfio-pci")
        XCTAssertContains(error?.description, "bind the device to vfio-pci")
        XCTAssertContains(error?.description, "No such file or directory")
    }

    func testContainerOpenOnThisHost() throws {
        let logger = Logger(label: "t")
        if FileManager.default.fileExists(atPath: "/dev/vfio/vfio") {
            // A host with VFIO: opening must work and pick a type1 model.
            let container = try Container.open(logger: logger)
            XCTAssertTrue([IOMMUType.type1, .type1v2].contains(container.iommuType))
            try container.close()
        } else {
            let error = expectError { try Container.open(logger: logger) }
            XCTAssertEqual(error?.errno, ENOENT)
            XCTAssertEqual(error?.subject, "/dev/vfio/vfio")
            XCTAssertContains(error?.description, "open on /dev/vfio/vfio failed")
            XCTAssertContains(error?.hint, "no such device /dev/vfio/vfio: load vfio and vfio_iommu_type1")
        }
    }
}
