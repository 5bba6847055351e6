import Glibc
import UnixIO
import XCTest

final class SystemErrorTests: SocketTestCase {
    func testDescriptionNamesCallDetailAndErrno() {
        let error = SystemError(call: "accept", errno: EMFILE, detail: "/run/x.sock")
        XCTAssertEqual(error.description, "accept(/run/x.sock): Too many open files (errno 24)")
    }

    func testDescriptionWithoutDetail() {
        XCTAssertEqual(SystemError(call: "poll", errno: EINVAL).description, "poll: Invalid argument (errno 22)")
    }

    func testOurOwnFailureHasNoStrerror() {
        let error = SystemError(call: "recvmsg", errno: 0, detail: "x: connection closed after 3 of 16 bytes")
        XCTAssertEqual(error.description, "recvmsg(x: connection closed after 3 of 16 bytes)")
    }
}
