import CVFIO
import Glibc
import VFIO
import XCTest

final class GroupTests: XCTestCase {
    func testOpenByNumber() throws {
        let fixture = Fixture()
        let group = try fixture.openGroup()
        XCTAssertEqual(group.number, 12)
        XCTAssertEqual(group.path, "/fake/dev/vfio/12")
        XCTAssertTrue(try group.status().isViable)
        XCTAssertFalse(try group.status().isContainerSet)
    }

    func testOpenMissingGroupExplainsBinding() {
        let fixture = Fixture()
        let error = expectError { try Group.open(number: 7, paths: fixture.paths, kernel: fixture.kernel, logger: fixture.logger) }
        XCTAssertEqual(error?.operation, "open")
        XCTAssertEqual(error?.subject, "/fake/dev/vfio/7")
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertContains(error?.hint, "group 7 is not present")
        XCTAssertContains(error?.hint, "bound to vfio-pci")
    }

    func testOpenGroupPermissionAndBusyHints() {
        let fixture = Fixture()
        for (code, fragment) in [(EACCES, "permissions on /fake/dev/vfio/12"),
                                 (EPERM, "permissions on /fake/dev/vfio/12"),
                                 (EBUSY, "already open by another process")] {
            fixture.kernel.with { $0.openErrors[fixture.paths.group(12)] = code }
            let error = expectError { try fixture.openGroup() }
            XCTAssertEqual(error?.errno, code)
            XCTAssertContains(error?.hint, fragment)
        }
    }

    func testOpenByPCIAddressFollowsTheIOMMUGroupLink() throws {
        let fixture = Fixture()
        for text in ["0000:01:00.0", "01:00.0"] {
            let group = try Group.open(pciAddress: text, paths: fixture.paths, kernel: fixture.kernel, logger: fixture.logger)
            XCTAssertEqual(group.number, 12)
            try group.close()
        }
    }

    func testPCIAddressWithoutDevice() {
        let fixture = Fixture()
        let error = expectError {
            try Group.groupNumber(of: PCIAddress("0000:02:00.0")!, paths: fixture.paths, kernel: fixture.kernel)
        }
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertEqual(error?.subject, "/fake/sys/bus/pci/devices/0000:02:00.0")
        XCTAssertContains(error?.hint, "no PCI device 0000:02:00.0")
    }

    func testPCIAddressWithoutIOMMUGroup() {
        let fixture = Fixture()
        fixture.kernel.with { $0.links["/fake/sys/bus/pci/devices/0000:01:00.0/iommu_group"] = nil }
        let error = expectError {
            try Group.groupNumber(of: PCIAddress("0000:01:00.0")!, paths: fixture.paths, kernel: fixture.kernel)
        }
        XCTAssertContains(error?.hint, "has no IOMMU group")
    }

    func testPCIAddressWithGarbageLink() {
        let fixture = Fixture()
        fixture.kernel.with { $0.links["/fake/sys/bus/pci/devices/0000:01:00.0/iommu_group"] = "../groups/twelve" }
        let error = expectError {
            try Group.groupNumber(of: PCIAddress("0000:01:00.0")!, paths: fixture.paths, kernel: fixture.kernel)
        }
        XCTAssertContains(error?.detail, "'twelve' is not a group number")
    }

    func testInvalidPCIAddressText() {
        let fixture = Fixture()
        let error = expectError {
            try Group.open(pciAddress: "01:00", paths: fixture.paths, kernel: fixture.kernel, logger: fixture.logger)
        }
        XCTAssertEqual(error?.errno, EINVAL)
        XCTAssertContains(error?.hint, "DDDD:BB:DD.F")
    }

    func testMembersReportDrivers() throws {
        let fixture = Fixture()
        addSiblings(fixture)
        let members = try fixture.openGroup().members()
        XCTAssertEqual(members, [
            GroupMember(name: "0000:01:00.0", driver: "vfio-pci"),
            GroupMember(name: "0000:01:00.1", driver: "snd_hda_intel"),
            GroupMember(name: "0000:01:00.2", driver: nil),
        ])
    }

    func testNonViableGroupNamesTheDevicesInTheWay() throws {
        let fixture = Fixture()
        addSiblings(fixture)
        fixture.kernel.with { $0.groupFlags[12] = 0 }
        let group = try fixture.openGroup()
        let error = expectError { try group.requireViable() }
        XCTAssertEqual(error?.subject, "group 12")
        XCTAssertEqual(error?.errno, 0)
        XCTAssertContains(error?.detail, "group 12 is not viable")
        XCTAssertContains(error?.detail, "0000:01:00.1 (driver snd_hda_intel)")
        XCTAssertContains(error?.detail, "0000:01:00.2 (driver none)")
        XCTAssertFalse(error?.detail?.contains("0000:01:00.0") ?? true, "the vfio-pci device is not in the way")
        XCTAssertContains(error?.hint, "must be bound to vfio-pci or unbound")

        // setContainer checks first and never reaches the kernel.
        let container = try fixture.openContainer()
        XCTAssertEqual(expectError { try group.setContainer(container) }?.detail, error?.detail)
        XCTAssertEqual(fixture.count(cvfio_VFIO_GROUP_SET_CONTAINER), 0)
        XCTAssertTrue(container.attachedGroups.isEmpty)
    }

    func testNonViableGroupWhoseMembersCannotBeListed() throws {
        let fixture = Fixture()
        fixture.kernel.with {
            $0.groupFlags[12] = 0
            $0.directories = [:]
        }
        let error = expectError { try fixture.openGroup().requireViable() }
        XCTAssertContains(error?.detail, "could not list the group's devices")
    }

    func testSetContainerTwiceIsRefusedByTheKernel() throws {
        let fixture = Fixture()
        let (container, group) = try fixture.readyContainer()
        XCTAssertTrue(try group.status().isContainerSet)
        let error = expectError { try group.setContainer(container) }
        XCTAssertEqual(error?.errno, EINVAL)
        XCTAssertContains(error?.hint, "already attached")
    }

    func testUnsetContainer() throws {
        let fixture = Fixture()
        let (container, group) = try fixture.readyContainer()
        try group.unsetContainer()
        XCTAssertTrue(container.attachedGroups.isEmpty)
        XCTAssertFalse(try group.status().isContainerSet)
        // The last group leaving releases the IOMMU model, as in the kernel.
        XCTAssertFalse(container.isIOMMUSet)
        XCTAssertContains(expectError { try container.unmapAll() }?.detail, "no IOMMU model set")
        try container.attach(group)
        XCTAssertTrue(container.isIOMMUSet)
        XCTAssertEqual(fixture.count(cvfio_VFIO_SET_IOMMU), 2)
    }

    func testDroppingAGroupDetachesItFromTheContainer() throws {
        let fixture = Fixture()
        let container = try fixture.openContainer()
        do {
            let group = try fixture.openGroup()
            try container.attach(group)
            XCTAssertEqual(container.attachedGroups, [12])
        }
        XCTAssertTrue(container.attachedGroups.isEmpty)
        XCTAssertFalse(container.isIOMMUSet)
        XCTAssertFalse(fixture.kernel.with { $0.open.values.contains(.group(12)) })
    }

    func testGetDeviceFDNeedsAnIOMMU() throws {
        let fixture = Fixture()
        let group = try fixture.openGroup()
        let error = expectError { try group.openDevice(Fixture.device) }
        XCTAssertEqual(error?.operation, "VFIO_GROUP_GET_DEVICE_FD")
        XCTAssertEqual(error?.errno, EINVAL)
        XCTAssertContains(error?.hint, "set its IOMMU model first")
    }

    func testGetDeviceFDByName() throws {
        let fixture = Fixture()
        let (_, group) = try fixture.readyContainer()
        let device = try group.openDevice(Fixture.device)
        XCTAssertEqual(device.name, Fixture.device)
        XCTAssertTrue(fixture.kernel.with { $0.open.values.contains(.device(Fixture.device)) })
        let error = expectError { try group.openDevice("0000:09:00.0") }
        XCTAssertEqual(error?.errno, ENODEV)
        XCTAssertContains(error?.hint, "no device named 0000:09:00.0 in group 12")
    }

    private func addSiblings(_ fixture: Fixture) {
        let members = fixture.paths.groupDevices(12)
        fixture.kernel.with { s in
            s.directories[members] = ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"]
            s.links["\(members)/0000:01:00.1/driver"] = "../../../../bus/pci/drivers/snd_hda_intel"
        }
    }
}
