import Foundation
import Glibc
import Posix
import UnixIO
import Wire
import XCTest

/// `vtdbridge-sim vfio-user-stub` and `socket-echo`, the two helper
/// processes of make bench's vfio-user figures, as real processes. The
/// benchmark's floor is only a floor if they answer what a client asks,
/// with nothing refused.
final class VFIOUserStubTests: XCTestCase {
    private var directory = ""
    private var stub: Process?

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "vu-stub-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        if let stub, stub.isRunning {
            stub.terminate()
            stub.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private var stubLog: String { (try? String(contentsOfFile: directory + "/stub.log", encoding: .utf8)) ?? "" }

    /// Starts the stub and connects a client that has sent VERSION.
    private func startStub() throws -> TestVFIOUserClient {
        let socket = directory + "/stub.sock"
        let p = Process()
        p.executableURL = DaemonHarness.binary("vtdbridge-sim")
        p.arguments = ["vfio-user-stub", "--socket", socket]
        guard FileManager.default.createFile(atPath: directory + "/stub.log", contents: nil) else { throw HarnessError("no log file") }
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/stub.log"))
        try p.run()
        stub = p
        let deadline = Date().addingTimeInterval(20)
        while true {
            if let client = try? TestVFIOUserClient(path: socket) {
                try client.version()
                return client
            }
            guard p.isRunning, Date() < deadline else { throw HarnessError("the stub did not listen on \(socket): \(stubLog)") }
            usleep(20_000)
        }
    }

    private func reply(_ client: TestVFIOUserClient, _ request: VFIOUserRequest, fds: [FileDescriptor] = []) throws -> VFIOUserReplyMessage {
        try XCTUnwrap(client.send(request, fds: fds)).0
    }

    private func payload(_ message: VFIOUserReplyMessage) throws -> VFIOUserReply {
        guard case let .success(reply) = message.outcome else { throw HarnessError("refused: \(message)") }
        return reply
    }

    func testTheStubAnswersDMAAtOnceAndCountsIt() throws {
        let client = try startStub()
        let memory = try FileDescriptor.memoryFile(name: "stub-test", size: 1 << 20)
        for i in 0..<3 {
            let map = VFIOUserDMAMap(flags: VFIOUserDMAMap.readable | VFIOUserDMAMap.writeable, offset: UInt64(i) << 12,
                                     iova: 0x1000_0000 + UInt64(i) << 12, size: 4096)
            XCTAssertEqual(try payload(reply(client, .dmaMap(map), fds: [memory.duplicate()])), .dmaMap)
        }
        let unmap = VFIOUserDMAUnmap(iova: 0x1000_0000, size: 0x3000)
        XCTAssertEqual(try payload(reply(client, .dmaUnmap(unmap))), .dmaUnmap(unmap))
        client.close()
        // Its counters, logged when the client goes, are what the benchmark checks.
        let deadline = Date().addingTimeInterval(10)
        while !stubLog.contains("client pid") && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(stubLog.contains("dma-maps=3 dma-unmaps=1 refused=0 fds-closed=3"), stubLog)
    }

    func testTheStubLooksLikeEduToVFIOUserPCI() throws {
        let client = try startStub()
        XCTAssertEqual(try payload(reply(client, .deviceGetInfo(VFIOUserDeviceInfo()))),
                       .deviceGetInfo(VFIOUserDeviceInfo(flags: VFIOUserDeviceInfo.flagReset | VFIOUserDeviceInfo.flagPCI, regionCount: 9, irqCount: 5)))
        let readWrite = VFIOUserRegionInfo.flagRead | VFIOUserRegionInfo.flagWrite
        XCTAssertEqual(try payload(reply(client, .deviceGetRegionInfo(VFIOUserRegionInfo(index: 0)))),
                       .deviceGetRegionInfo(VFIOUserRegionInfo(flags: readWrite, index: 0, size: 1 << 20), capabilities: []))
        XCTAssertEqual(try payload(reply(client, .deviceGetRegionInfo(VFIOUserRegionInfo(index: 7)))),
                       .deviceGetRegionInfo(VFIOUserRegionInfo(flags: readWrite, index: 7, size: 256), capabilities: []))
        XCTAssertEqual(try payload(reply(client, .deviceGetRegionInfo(VFIOUserRegionInfo(index: 2)))),
                       .deviceGetRegionInfo(VFIOUserRegionInfo(flags: 0, index: 2, size: 0), capabilities: []))
        XCTAssertEqual(try reply(client, .deviceGetRegionInfo(VFIOUserRegionInfo(index: 9))).errno, UInt32(EINVAL))

        // Config space: edu's IDs and class, and writes stick.
        let ids = VFIOUserRegionAccess(offset: 0, region: 7, count: 12)
        XCTAssertEqual(try payload(reply(client, .regionRead(ids))),
                       .regionRead(ids, data: [0x34, 0x12, 0xe8, 0x11, 0, 0, 0, 0, 0x10, 0, 0xff, 0]))
        let command = VFIOUserRegionAccess(offset: 4, region: 7, count: 2)
        XCTAssertEqual(try payload(reply(client, .regionWrite(command, data: [0x06, 0]))), .regionWrite(command))
        XCTAssertEqual(try payload(reply(client, .regionRead(command))), .regionRead(command, data: [0x06, 0]))
        XCTAssertEqual(try reply(client, .regionRead(VFIOUserRegionAccess(offset: 0xfc, region: 7, count: 8))).errno, UInt32(EINVAL))

        // BAR0: edu's identification and liveness registers, the latter
        // written posted, as QEMU writes a trapped BAR.
        let ident = VFIOUserRegionAccess(offset: 0, region: 0, count: 4)
        XCTAssertEqual(try payload(reply(client, .regionRead(ident))), .regionRead(ident, data: [0xed, 0, 0, 0x01]))
        let liveness = VFIOUserRegionAccess(offset: 4, region: 0, count: 4)
        XCTAssertNil(try client.send(.regionWrite(liveness, data: [0x78, 0x56, 0x34, 0x12]), noReply: true))
        XCTAssertEqual(try payload(reply(client, .regionRead(liveness))), .regionRead(liveness, data: [0x87, 0xa9, 0xcb, 0xed]))

        // A reset brings config space back.
        XCTAssertEqual(try payload(reply(client, .deviceReset)), .deviceReset)
        XCTAssertEqual(try payload(reply(client, .regionRead(command))), .regionRead(command, data: [0, 0]))
        XCTAssertEqual(try reply(client, .deviceGetIRQInfo(VFIOUserIRQInfo(index: 5))).errno, UInt32(EINVAL))
    }

    func testSocketEchoSendsBackTheHeadOfEachRequest() throws {
        let path = directory + "/echo.sock"
        let listener = try UnixListener.listen(path: path, mode: 0o600)
        defer { listener.close() }
        let p = Process()
        p.executableURL = DaemonHarness.binary("vtdbridge-sim")
        p.arguments = ["socket-echo", "--socket", path, "--request-size", "48", "--reply-size", "16"]
        try p.run()
        var connection: UnixConnection?
        let deadline = Date().addingTimeInterval(20)
        while connection == nil {
            connection = try listener.accept(nonBlocking: false)
            guard connection != nil || (p.isRunning && Date() < deadline) else { throw HarnessError("socket-echo did not connect") }
            if connection == nil { usleep(20_000) }
        }
        let memory = try FileDescriptor.memoryFile(name: "echo-test", size: 4096)
        for round in 0..<3 {
            let request = (0..<48).map { UInt8(truncatingIfNeeded: $0 * 7 + round) }
            try connection!.sendAll(request, fds: round == 1 ? [memory] : [])
            let answer = try XCTUnwrap(connection!.receiveExactly(count: 16))
            XCTAssertEqual(answer.bytes, Array(request[0..<16]))
            XCTAssertTrue(answer.fds.isEmpty)
        }
        connection!.close()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
    }
}
