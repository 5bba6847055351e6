import VFIO
import XCTest

final class PCIAddressTests: XCTestCase {
    func testFullAndShortForms() {
        XCTAssertEqual(PCIAddress("0000:01:00.0"), PCIAddress(domain: 0, bus: 1, device: 0, function: 0))
        XCTAssertEqual(PCIAddress("01:00.0"), PCIAddress(domain: 0, bus: 1, device: 0, function: 0))
        XCTAssertEqual(PCIAddress("10de:Af:1f.7"), PCIAddress(domain: 0x10DE, bus: 0xAF, device: 0x1F, function: 7))
        XCTAssertEqual(PCIAddress("af:1F.7")?.description, "0000:af:1f.7")
        XCTAssertEqual(PCIAddress(domain: 1, bus: 2, device: 3, function: 4).description, "0001:02:03.4")
    }

    func testRejectsMalformed() {
        for text in ["", "01:00", "01:00.8", "01:20.0", "1:00.0", "0000:01:00.0.1", "00:01:00:0",
                     "000:01:00.0", "0000:01:00.", "zz:00.0", "+1:00.0", "01:-1.0", "0000:01:00.00"] {
            XCTAssertNil(PCIAddress(text), text)
        }
    }

    func testPaths() {
        let paths = VFIOPaths(deviceDirectory: "/d", sysfs: "/s")
        XCTAssertEqual(paths.container, "/d/vfio")
        XCTAssertEqual(paths.group(3), "/d/3")
        XCTAssertEqual(paths.pciDevice(PCIAddress("01:00.0")!), "/s/bus/pci/devices/0000:01:00.0")
        XCTAssertEqual(paths.groupDevices(3), "/s/kernel/iommu_groups/3/devices")
        XCTAssertEqual(paths.dmaEntryLimit, "/s/module/vfio_iommu_type1/parameters/dma_entry_limit")
        XCTAssertEqual(VFIOPaths().container, "/dev/vfio/vfio")
    }
}
