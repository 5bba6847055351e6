import CPosix
import Glibc
import UnixIO
import XCTest

final class SystemdNotifyTests: SocketTestCase {
    /// Receives one datagram from a socket bound like systemd's notify socket.
    private func receiveDatagram(_ fd: Int32) -> String? {
        var pollEntry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollEntry, 1, 2000) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    func testSendsToAPathSocket() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.file("notify")
        let fd = bindRawSocket(path, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        XCTAssertTrue(SystemdNotify.send("READY=1\nSTATUS=serving", environment: ["NOTIFY_SOCKET": path]))
        XCTAssertEqual(receiveDatagram(fd), "READY=1\nSTATUS=serving")
    }

    func testSendsToAnAbstractSocket() throws {
        let name = "@vtd-bridge-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = bindRawSocket(name, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        XCTAssertTrue(SystemdNotify.send("WATCHDOG=1", environment: ["NOTIFY_SOCKET": name]))
        XCTAssertEqual(receiveDatagram(fd), "WATCHDOG=1")
    }

    func testUnsetIsANoOp() throws {
        XCTAssertFalse(SystemdNotify.send("READY=1", environment: [:]))
        XCTAssertFalse(try SystemdNotify.notify("READY=1", environment: [:]))
        XCTAssertFalse(try SystemdNotify.notify("READY=1", environment: ["NOTIFY_SOCKET": ""]))
    }

    func testFailuresAreFalseOrThrown() throws {
        let scratch = try ScratchDirectory()
        let missing = scratch.file("nobody")
        XCTAssertFalse(SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": missing]))
        let error = expectError { try SystemdNotify.notify("READY=1", environment: ["NOTIFY_SOCKET": missing]) }
        XCTAssertEqual(error?.call, "sendto")
        XCTAssertEqual(error?.errno, ENOENT)

        let vsock = expectError { try SystemdNotify.notify("READY=1", environment: ["NOTIFY_SOCKET": "vsock:2:1234"]) }
        XCTAssertEqual(vsock?.errno, EAFNOSUPPORT)
    }

    func testProcessEnvironmentReadsTheRealVariables() {
        let path = "/tmp/unixio-notify-\(getpid())"
        setenv("NOTIFY_SOCKET", path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        XCTAssertEqual(SystemdNotify.processEnvironment()["NOTIFY_SOCKET"], path)
        unsetenv("NOTIFY_SOCKET")
        XCTAssertNil(SystemdNotify.processEnvironment()["NOTIFY_SOCKET"])
    }

    func testWatchdogInterval() {
        XCTAssertEqual(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"]), .seconds(30))
        XCTAssertEqual(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "1500"]), .microseconds(1500))
        XCTAssertEqual(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "20000000",
                                                                    "WATCHDOG_PID": "\(getpid())"]), .seconds(20))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "20000000",
                                                                  "WATCHDOG_PID": "\(getpid() + 1)"]),
                     "meant for another process")
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "x"]))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: [:]))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "0"]))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "-5"]))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "30s"]))
    }
}
