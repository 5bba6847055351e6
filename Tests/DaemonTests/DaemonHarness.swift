import Bridge
import Foundation
import Glibc
import Posix
import UnixIO
import VTd
import VTdBridgeClient
import VTdGuest
import VTdBridgeTestSupport
import Wire
import XCTest

/// A real vtdbridged process on the dry-run backend, in a temporary
/// directory of its own, for end-to-end tests (DaemonProcess starts, waits
/// for and stops it).
final class DaemonHarness {
    let daemon: DaemonProcess
    var directory: String { daemon.directory }
    var process: Process { daemon.process }
    var logPath: String { daemon.logPath }
    var eventSocket: String { directory + "/event.sock" }
    var controlSocket: String { directory + "/control.sock" }
    var stateDirectory: String { directory + "/state" }

    static var binDirectory: URL { Bundle.main.bundleURL }
    static func binary(_ name: String) -> URL { binDirectory.appendingPathComponent(name) }

    /// `logLevel` nil: no --log-level flag, so that a config file's
    /// log.level decides.
    init(name: String = "test", devices: [String] = ["0000:01:00.0=00:03.0"], extraArguments: [String] = [],
         environment: [String: String] = [:], directory: String? = nil, logLevel: String? = "debug") throws {
        let directory = directory ?? DaemonProcess.temporaryDirectory(prefix: "vtdbridged")
        var args = ["--backend", "dry-run", "--name", name, "--event-socket", directory + "/event.sock",
                    "--control-socket", directory + "/control.sock",
                    "--state-directory", directory + "/state"] + (logLevel.map { ["--log-level", $0] } ?? [])
        for d in devices { args += ["--device", d] }
        daemon = try DaemonProcess(executable: Self.binary("vtdbridged"), arguments: args + extraArguments,
                                   environment: environment, directory: directory)
        try waitForSocket()
    }

    func waitForSocket(timeout: Double = 20) throws { try daemon.waitForSocket(controlSocket, timeout: timeout) }

    var log: String { daemon.log }

    func control() throws -> ControlClient { try ControlClient(path: controlSocket) }

    /// Sends SIGTERM (or `signal`) and waits; returns the exit status.
    @discardableResult
    func terminate(signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        daemon.terminate(signal: signal, timeout: timeout)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a binary to completion; returns status, stdout and stderr. Output
/// goes through files, so a chatty tool never blocks on a full pipe.
func runTool(_ name: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let base = NSTemporaryDirectory() + "tool-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    for file in [base + ".out", base + ".err"] where !FileManager.default.createFile(atPath: file, contents: nil) {
        throw HarnessError("cannot create \(file)")
    }
    defer {
        unlink(base + ".out")
        unlink(base + ".err")
    }
    let p = Process()
    p.executableURL = DaemonHarness.binary(name)
    p.arguments = arguments
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
    try p.run()
    p.waitUntilExit()
    return (p.terminationStatus, try String(contentsOfFile: base + ".out", encoding: .utf8),
            try String(contentsOfFile: base + ".err", encoding: .utf8))
}

extension DaemonHarness {
    /// A VMM in this process (uid 0) whose guest has one page mapped for
    /// `sid` (IOVA 0x1000 → GPA 0x10000), connected and READY: 64 MiB of RAM
    /// in a memfd, tables in its top 8 MiB. Returns the client, the guest's
    /// table writer and the memfd (closed when the caller lets it go).
    func connectGuest(_ sid: SourceID) throws -> (EventClient, GuestTableWriter<GuestRAM>, FileDescriptor) {
        let caps = IOMMUCapabilities.make()
        let fd = try FileDescriptor.memoryFile(name: "test-guest-ram", size: 64 << 20)
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 64 << 20, backing: .fileDescriptor(fd, offset: 0))])
        var writer = try GuestTableWriter(memory: ram, caps: caps, tableArea: (56 << 20)..<(64 << 20))
        let client = try EventClient(path: eventSocket)
        try client.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try client.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 64 << 20, offset: 0)]), fds: [fd])
        try client.require(.setRootTable(writer.rootTable))
        try client.require(.setTranslation(true))
        try client.require(.ready)
        let batch = try writer.attach(sid, domain: 1) + writer.map(domain: 1, iova: 0x1000, gpa: 0x10000) + [GuestTableWriter<GuestRAM>.wait]
        let reply = try client.request(.invalidate(batch.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) }))
        XCTAssertEqual(reply.status, .ok, reply.message)
        return (client, writer, fd)
    }
}
