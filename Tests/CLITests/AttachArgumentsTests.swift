import VTdBridgeClient
import Wire
import XCTest

/// `status` names a host as it was attached; attaching it again must name it
/// the same way, or the daemon would not answer "already-attached".
final class AttachArgumentsTests: XCTestCase {
    func testAGroupBecomesTheGroupArgument() {
        let arguments = AttachArguments.naming(host: "group:12", guest: "00:03.0", returnFD: true)
        XCTAssertEqual(arguments, ["guest": .string("00:03.0"), "group": .int(12), "return-fd": true])
    }

    func testAPCIAddressBecomesTheHostArgument() {
        let arguments = AttachArguments.naming(host: "0000:00:01.0", guest: "00:04.0")
        XCTAssertEqual(arguments, ["guest": .string("00:04.0"), "host": .string("0000:00:01.0")])
        XCTAssertNil(arguments?["return-fd"], "return-fd is sent only when asked for")
    }

    func testAGroupWithoutADecimalNumberIsRefused() {
        for host in ["group:", "group:x1", "group:-3", "group:1a", "group:١٢", ""] {
            XCTAssertNil(AttachArguments.naming(host: host, guest: "00:03.0"), host)
        }
    }
}
