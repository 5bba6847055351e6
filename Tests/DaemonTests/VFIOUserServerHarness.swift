import Bridge
import CVFIO
import Foundation
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import VTdBridgeClient
import VTdBridgeTestSupport
import Wire
import XCTest
@testable import Daemon

/// A daemon running its poll loop in this process, on its own thread, over
/// a fake kernel: a vfio-user client in the test talks to it through a real
/// Unix socket, and the test sees every ioctl the daemon made for it.
final class InProcessDaemon: @unchecked Sendable {
    let directory: String
    let kernel = FakeKernel()
    let paths = VFIOPaths(deviceDirectory: "/fake/dev/vfio", sysfs: "/fake/sys")
    let pci = "0000:01:00.0"
    let daemon: Daemon
    private let done = DispatchSemaphore(value: 0)
    private var stopped = false

    var vfioUserSocket: String { directory + "/dev.sock" }
    var controlSocket: String { directory + "/control.sock" }

    private final class Level: LogLevelControl, @unchecked Sendable {
        var level: Logger.Level = .critical
        func setLevel(_ level: Logger.Level) { self.level = level }
    }

    /// `configure` adjusts the fake kernel before the daemon starts.
    init(quota: Int? = nil, configure: (inout FakeKernel.State) -> Void = { _ in }) throws {
        var template = Array("/tmp/vtdbridge-vu-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError(call: "mkdtemp", errno: errno)
        }
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        kernel.addAssignableDevice(pci, group: 12, paths: paths)
        kernel.with { s in
            s.realDeviceDescriptors = true
            // BAR0: 4 KiB, mappable; config space at 0x1000, 256 bytes.
            s.regions[0] = .init(size: 0x1000, offset: 0, flags: UInt32(cvfio_VFIO_REGION_INFO_FLAG_READ | cvfio_VFIO_REGION_INFO_FLAG_WRITE | cvfio_VFIO_REGION_INFO_FLAG_MMAP))
            s.regions[7] = .init(size: 0x100, offset: 0x1000, flags: UInt32(cvfio_VFIO_REGION_INFO_FLAG_READ | cvfio_VFIO_REGION_INFO_FLAG_WRITE))
            configure(&s)
        }
        var config = DaemonConfig(name: "vu")
        config.backend = .vfio
        config.vfioDeviceDirectory = paths.deviceDirectory
        config.sysfsRoot = paths.sysfs
        config.stateDirectory = directory + "/state"
        config.eventSocket = directory + "/event.sock"
        config.controlSocket = directory + "/control.sock"
        config.devices = [DeviceSpec(host: .pci(pci), guest: SourceID("00:03.0")!, quota: quota,
                                     vfioUserSocket: directory + "/dev.sock")]
        var logger = Logger(label: "vfio-user-test")
        logger.logLevel = .critical
        daemon = try Daemon(config: config, signals: SignalDescriptor(signals: []), logger: logger, logLevel: Level(),
                            kernel: kernel)
        let running = self
        Thread {
            _ = running.daemon.run()
            running.done.signal()
        }.start()
        // Ready once the loop answers `status`: start() (and so every
        // configured device and its socket) is done by then.
        for _ in 0..<500 {
            if (try? status()) != nil { return }
            usleep(10_000)
        }
        throw SystemError(call: "connect", errno: ETIMEDOUT, subject: controlSocket)
    }

    /// The daemon's `status` over its control socket.
    func status() throws -> JSONValue {
        try ControlClient(path: controlSocket).require("status")
    }

    /// The one device's `vfio-user` status object.
    func vfioUser() throws -> JSONValue {
        let devices = try status()["devices"]?.arrayValue ?? []
        return try XCTUnwrap(devices.first?["vfio-user"])
    }

    func counter(_ name: String) throws -> Int { try vfioUser()[name]?.intValue ?? -1 }

    /// Stops the loop through the control socket and waits for it.
    func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? ControlClient(path: controlSocket).call("shutdown")
        done.wait()
        for name in ["state/attachments.json", "state"] { unlink(directory + "/" + name); rmdir(directory + "/" + name) }
        rmdir(directory)
    }

    deinit { stop() }
}

/// A vfio-user client over a real socket: what QEMU's vfio-user-pci sends,
/// built with the project's codec, one message per sendmsg.
final class TestVFIOUserClient {
    let connection: UnixConnection
    private var nextID: UInt16 = 0

    init(path: String) throws {
        connection = try UnixConnection.connect(path: path)
    }

    /// Sends `request` (with `fds`) and returns the reply, or nil for a
    /// posted command.
    @discardableResult
    func send(_ request: VFIOUserRequest, fds: [FileDescriptor] = [], noReply: Bool = false) throws -> (VFIOUserReplyMessage, [FileDescriptor])? {
        nextID &+= 1
        try connection.sendAll(VFIOUserCodec.encodeCommand(request, messageID: nextID, noReply: noReply), fds: fds)
        if noReply { return nil }
        return try receiveReply()
    }

    /// Sends raw bytes (a malformed message) and returns the reply.
    func sendRaw(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws -> (VFIOUserReplyMessage, [FileDescriptor])? {
        try connection.sendAll(bytes, fds: fds)
        return try receiveReply()
    }

    /// The next reply; nil when the daemon closed the connection.
    func receiveReply() throws -> (VFIOUserReplyMessage, [FileDescriptor])? {
        guard let head = try connection.receiveExactly(count: VFIOUserHeader.size) else { return nil }
        let header = VFIOUserHeader.decode(head.bytes)
        var bytes = head.bytes
        var fds = head.fds
        if header.messageSize > UInt32(VFIOUserHeader.size) {
            guard let rest = try connection.receiveExactly(count: Int(header.messageSize) - VFIOUserHeader.size) else { return nil }
            bytes += rest.bytes
            fds += rest.fds
        }
        return (try VFIOUserCodec.decodeReply(bytes).get(), fds)
    }

    func version() throws {
        let reply = try XCTUnwrap(try send(.version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities(maxMessageFDs: 16)))))
        guard case .success(.version) = reply.0.outcome else { throw SystemError(call: "VERSION", errno: EPROTO) }
    }

    func close() { _ = connection.close() }
}

extension VFIOUserReplyMessage {
    var errno: UInt32? {
        if case let .error(errno) = outcome { return errno }
        return nil
    }
    var succeeded: Bool {
        if case .success = outcome { return true }
        return false
    }
}

enum VTdBridgeClientBridge {
    static func mappings(_ socket: String) throws -> JSONValue {
        try ControlClient(path: socket).require("mappings", ["guest": "00:03.0"])
    }
}
