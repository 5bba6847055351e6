import Glibc
import Posix
import XCTest

final class SystemErrorTests: XCTestCase {
    func testDescriptionNamesCallSubjectAndErrno() {
        let error = SystemError(call: "accept", errno: EMFILE, subject: "/run/x.sock")
        XCTAssertEqual(error.description, "accept(/run/x.sock): Too many open files (errno 24)")
    }

    func testDescriptionWithoutContext() {
        XCTAssertEqual(SystemError(call: "poll", errno: EINVAL).description, "poll: Invalid argument (errno 22)")
    }

    func testSubjectAndDetailTogether() {
        let error = SystemError(call: "mkdir", errno: EACCES, subject: "/var/lib/x", detail: "state directory")
        XCTAssertEqual(error.description, "mkdir(/var/lib/x: state directory): Permission denied (errno 13)")
    }

    func testOurOwnFailureHasNoStrerror() {
        let error = SystemError(call: "recvmsg", errno: 0, subject: "x", detail: "connection closed after 3 of 16 bytes")
        XCTAssertEqual(error.description, "recvmsg(x: connection closed after 3 of 16 bytes)")
    }

    func testCheckPassesValuesAndNamesFailures() throws {
        XCTAssertEqual(try SystemError.check(5, "read"), 5)
        XCTAssertEqual(expectError { try SystemError.check(-Int(ENOENT), "open", subject: "/x") },
                       SystemError(call: "open", errno: ENOENT, subject: "/x"))
    }
}
