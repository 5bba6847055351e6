import Logging
import VTd
import XCTest
@testable import Daemon

/// The names under which the daemon stores its descriptors with systemd:
/// valid FDNAMEs (no ':'), one per device and role, and read back to the
/// device they belong to, whatever else is in the store.
final class FDStoreNameTests: XCTestCase {
    func testDeviceNamesRoundTripAndAreValidFDNames() {
        for sid in [SourceID("00:03.0")!, SourceID("ff:1f.7")!, SourceID(rawValue: 0)] {
            for role in ["container", "group", "device", "journal"] {
                let name = FDStore.deviceName(sid, role)
                XCTAssertFalse(name.contains(":"), "FDNAME may not contain ':' (LISTEN_FDNAMES separator): \(name)")
                XCTAssertLessThanOrEqual(name.utf8.count, 255)
                XCTAssertEqual(FDStore.sourceID(inDeviceName: name), sid, name)
            }
        }
        XCTAssertEqual(FDStore.deviceName(SourceID("00:03.0")!, "journal"), "device.0018.journal")
        XCTAssertNil(FDStore.sourceID(inDeviceName: "event-listener"))
        XCTAssertNil(FDStore.sourceID(inDeviceName: "device.zz.container"))
        XCTAssertNil(FDStore.sourceID(inDeviceName: "device.0018"))
    }

    func testWithoutSystemdNothingIsStoredAndInheritedDevicesAreFoundByName() throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = FDStore(inherited: [], logger: logger, environment: [:])
        XCTAssertFalse(store.isAvailable)
        XCTAssertTrue(store.storedDevices.isEmpty)
        XCTAssertNil(store.take("event-listener"))
    }
}
