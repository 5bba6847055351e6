import XCTest
import VTd
@testable import Daemon

final class ConfigDeviceSpecTests: XCTestCase {
    private func parse(_ text: String, line: UInt = #line) throws -> DeviceSpec {
        do {
            return try DeviceSpec.parse(text)
        } catch {
            XCTFail("\(text): \(error)", line: line)
            throw error
        }
    }

    private func parseError(_ text: String, line: UInt = #line) -> ConfigError? {
        do {
            let spec = try DeviceSpec.parse(text)
            XCTFail("\(text) parsed as \(spec)", line: line)
            return nil
        } catch {
            XCTAssertEqual(error.key, "devices", line: line)
            return error
        }
    }

    func testFullPCIAddress() throws {
        let spec = try parse("0000:01:00.0=00:03.0")
        XCTAssertEqual(spec.host, .pci("0000:01:00.0"))
        XCTAssertEqual(spec.guest, SourceID(bus: 0, device: 3, function: 0))
        XCTAssertNil(spec.quota)
    }

    func testShortAddressWithQuota() throws {
        let spec = try parse("01:00.0=00:03.0,quota=4096")
        XCTAssertEqual(spec.host, .pci("0000:01:00.0"), "the domain is filled in")
        XCTAssertEqual(spec.guest.rawValue, 0x0018)
        XCTAssertEqual(spec.quota, 4096)
    }

    func testVFIOUserSocket() throws {
        let spec = try parse("01:00.0=00:03.0,vfio-user=/run/vtd-bridge/vm0/dev0.sock,quota=8")
        XCTAssertEqual(spec.vfioUserSocket, "/run/vtd-bridge/vm0/dev0.sock")
        XCTAssertEqual(spec.quota, 8)
        XCTAssertEqual(try parse(spec.description), spec, "the text form reads back")
        XCTAssertTrue(parseError("01:00.0=00:03.0,vfio-user=dev.sock")?.message.contains("not an absolute path") ?? false)
        XCTAssertTrue(parseError("01:00.0=00:03.0,vfio-user=")?.message.contains("has no value") ?? false)
        XCTAssertTrue(parseError("01:00.0=00:03.0,vfio-user=/a,vfio-user=/b")?.message.contains("given twice") ?? false)
        let long = "/" + String(repeating: "s", count: 120)
        XCTAssertTrue(parseError("01:00.0=00:03.0,vfio-user=\(long)")?.message.contains("at most 107") ?? false)
    }

    func testVFIOUserNeedsARealDeviceAndItsOwnSocket() throws {
        do {
            _ = try DaemonConfig.load(file: nil, environment: [:], overrides: [
                "backend": "dry-run", "devices": "01:00.0=00:03.0,vfio-user=/run/x.sock"])
            XCTFail("dry-run with a vfio-user device was accepted")
        } catch {
            XCTAssertTrue(error.message.contains("dry-run backend opens no device"), error.message)
        }
        do {
            _ = try DaemonConfig.load(file: nil, environment: [:], overrides: [
                "devices": "01:00.0=00:03.0,vfio-user=/run/x.sock 02:00.0=00:04.0,vfio-user=/run/x.sock"])
            XCTFail("two devices on one vfio-user socket were accepted")
        } catch {
            XCTAssertTrue(error.message.contains("one socket per device"), error.message)
        }
    }

    func testGroup() throws {
        let spec = try parse("group:12=00:04.0")
        XCTAssertEqual(spec.host, .group(12))
        XCTAssertEqual(spec.guest, SourceID(bus: 0, device: 4, function: 0))
    }

    func testNormalization() throws {
        XCTAssertEqual(try parse("0000:AF:1F.7=FF:1f.7").host, .pci("0000:af:1f.7"))
        XCTAssertEqual(try parse("0001:02:03.4=01:02.3").host, .pci("0001:02:03.4"), "a non-zero host domain is kept")
        XCTAssertEqual(try parse("  01:00.0 = 00:03.0 , quota=5 ").quota, 5, "spaces around parts are ignored")
        XCTAssertEqual(try parse("01:00.0=0000:00:03.0").guest, SourceID("00:03.0"), "guest segment 0000 is accepted")
    }

    func testDescriptionRoundTrips() throws {
        for text in ["0000:01:00.0=00:03.0", "0000:02:00.1=00:04.0,quota=9", "group:7=01:1f.7"] {
            let spec = try parse(text)
            XCTAssertEqual(spec.description, text)
            XCTAssertEqual(try parse(spec.description), spec)
        }
    }

    func testErrorsSayWhatIsExpected() {
        let cases: [(String, String)] = [
            ("", "empty device"),
            ("01:00.0", "no \"=\" between host and guest"),
            ("01:00.0=00:03.0=1", "more than one \"=\""),
            ("1:0.0=00:03.0", "host \"1:0.0\" is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F"),
            ("01:20.0=00:03.0", "is not a PCI address"),
            ("group:=00:03.0", "host \"group:\" is not a VFIO group; expected group:N"),
            ("group:-1=00:03.0", "is not a VFIO group"),
            ("group:x=00:03.0", "is not a VFIO group"),
            ("01:00.0=00:20.0", "guest \"00:20.0\" is not a source-id; expected BB:DD.F"),
            ("01:00.0=0001:00:03.0", "is not a source-id"),
            ("01:00.0=", "guest \"\" is not a source-id"),
            ("01:00.0=00:03.0,quota=0", "quota \"0\" is not a positive whole number"),
            ("01:00.0=00:03.0,quota=-4", "is not a positive whole number"),
            ("01:00.0=00:03.0,quota=", "quota \"\" is not a positive whole number"),
            ("01:00.0=00:03.0,quota", "quota has no value"),
            ("01:00.0=00:03.0,quota=1,quota=2", "quota is given twice"),
            ("01:00.0=00:03.0,rom=off", "unknown option \"rom\"; the options are quota=N and vfio-user=PATH"),
            ("01:00.0=00:03.0,", "empty option after \",\""),
        ]
        for (text, expected) in cases {
            guard let error = parseError(text) else { continue }
            XCTAssertTrue(error.message.hasPrefix("\"\(text)\": "), "\(text): \(error.message)")
            XCTAssertTrue(error.message.contains(expected), "\(text): \(error.message)")
        }
    }
}
