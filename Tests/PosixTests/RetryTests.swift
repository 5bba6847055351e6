import Glibc
import Posix
import XCTest

/// The one EINTR helper.
final class RetryTests: XCTestCase {
    func testRetriesOnlyEINTR() {
        var results: [Int32] = [-EINTR, -EINTR, -EAGAIN, 4]
        var calls = 0
        let result = retryingEINTR { () -> Int32 in
            calls += 1
            return results.removeFirst()
        }
        XCTAssertEqual(result, -EAGAIN, "any other errno is handed back at once")
        XCTAssertEqual(calls, 3)
    }

    func testSystemCallRetriesAndNamesTheCall() throws {
        var calls = 0
        let value = try systemCall("open", subject: "/x") { () -> Int32 in
            calls += 1
            return calls == 1 ? -EINTR : 3
        }
        XCTAssertEqual(value, 3)
        XCTAssertEqual(calls, 2)
        let error = expectError { try systemCall("mkdir", subject: "/a/b", detail: "why") { -EACCES } }
        XCTAssertEqual(error, SystemError(call: "mkdir", errno: EACCES, subject: "/a/b", detail: "why"))
    }
}
