import Glibc
import UnixIO
import XCTest

final class AccountTests: SocketTestCase {
    func testGroupAndUserLookups() {
        XCTAssertEqual(groupID(named: "root"), 0)
        XCTAssertEqual(userID(named: "root"), 0)
        XCTAssertNil(groupID(named: "vtd-bridge-no-such-group"))
        XCTAssertNil(userID(named: "vtd-bridge-no-such-user"))
        // The current user's own name maps back to its id.
        if let entry = getpwuid(getuid()) {
            XCTAssertEqual(userID(named: String(cString: entry.pointee.pw_name)), getuid())
        }
    }
}
