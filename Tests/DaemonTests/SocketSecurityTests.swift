import Bridge
import Foundation
import Glibc
import Posix
import UnixIO
import VTd
import VTdBridgeClient
import VTdGuest
import Wire
import XCTest

/// Who may connect to the daemon's two sockets, and how the sockets behave
/// around crashes, second instances, slow clients and half-sent frames
/// (docs/RELIABILITY.md, "Sockets").
///
/// The access tests run real client processes as a second uid (65534,
/// nobody) through `setpriv` (util-linux): `vtdbridgectl status` on the
/// control socket, and on the event channel a small python3 client written
/// from docs/PROTOCOL.md §1.2 alone. They need root, as CI runs them.
final class SocketSecurityTests: XCTestCase {
    static let otherUID: uid_t = 65534
    let sid = SourceID("00:03.0")!

    // MARK: running a client as another uid

    /// `setpriv`, to run a client with another uid, gid and no supplementary groups.
    static let setpriv: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { access($0, X_OK) == 0 }

    /// A python3 that uid 65534 can run (a pyenv shim under /root is not one).
    static let python: String? = {
        guard let setpriv else { return nil }
        for candidate in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] where access(candidate, X_OK) == 0 {
            if let r = try? runAs(setpriv: setpriv, uid: otherUID, gid: otherUID, groups: [], candidate, ["-I", "-c", "print('ok')"]),
               r.status == 0, r.stdout == "ok\n" {
                return candidate
            }
        }
        return nil
    }()

    /// vtdbridgectl where uid 65534 can run it: the build directory itself,
    /// or, when that is out of its reach (a checkout under /root), a copy.
    static let vtdbridgectl: String? = {
        guard let setpriv else { return nil }
        func runs(_ path: String) -> Bool {
            (try? runAs(setpriv: setpriv, uid: otherUID, gid: otherUID, groups: [], path, ["--help"]))?.status == 0
        }
        let built = DaemonHarness.binary("vtdbridgectl").path
        if runs(built) { return built }
        let directory = NSTemporaryDirectory() + "vtdbridgectl-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        let copy = directory + "/vtdbridgectl"
        try? FileManager.default.removeItem(atPath: copy)
        guard (try? FileManager.default.copyItem(atPath: built, toPath: copy)) != nil else { return nil }
        chmod(copy, 0o755)
        return runs(copy) ? copy : nil
    }()

    typealias Tools = (setpriv: String, python: String, vtdbridgectl: String)

    func requireSecondUID() throws -> Tools {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a client as uid \(Self.otherUID)") }
        let setpriv = try XCTUnwrap(Self.setpriv, "setpriv (util-linux) is needed to run a client as another uid")
        let python = try XCTUnwrap(Self.python, "a python3 that uid \(Self.otherUID) can run is needed (/usr/bin/python3)")
        let ctl = try XCTUnwrap(Self.vtdbridgectl, "uid \(Self.otherUID) cannot run vtdbridgectl, not even a copy in \(NSTemporaryDirectory()) (is the Swift runtime readable by others?)")
        return (setpriv, python, ctl)
    }

    /// A harness whose directory uid 65534 may pass through (whatever the
    /// umask), so that only the socket files' modes and the daemon decide.
    func reachableDaemon(environment: [String: String] = [:]) throws -> DaemonHarness {
        let daemon = try DaemonHarness(environment: environment)
        XCTAssertEqual(chmod(daemon.directory, 0o711), 0)
        return daemon
    }

    /// Runs `executable` as `uid`:`gid` with exactly `groups` as its
    /// supplementary groups; output through files; killed after `timeout`.
    static func runAs(setpriv: String, uid: uid_t, gid: gid_t, groups: [gid_t], _ executable: String, _ arguments: [String],
                      timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
        let base = NSTemporaryDirectory() + "as-\(uid)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            unlink(base + ".out")
            unlink(base + ".err")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: setpriv)
        let groupOption = groups.isEmpty ? "--clear-groups" : "--groups=" + groups.map(String.init).joined(separator: ",")
        p.arguments = ["--reuid=\(uid)", "--regid=\(gid)", groupOption, "--", executable] + arguments
        // Nothing of root's environment (HOME, a pyenv PYTHONPATH) is needed.
        p.environment = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"]
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw HarnessError("\(executable) \(arguments) as uid \(uid) did not finish within \(timeout) s")
        }
        return (p.terminationStatus, try String(contentsOfFile: base + ".out", encoding: .utf8),
                try String(contentsOfFile: base + ".err", encoding: .utf8))
    }

    /// `vtdbridgectl status --json --socket PATH` as uid 65534 (or `groups`).
    func controlStatus(as tools: Tools, _ daemon: DaemonHarness, groups: [gid_t] = [])
        throws -> (status: Int32, stdout: String, stderr: String) {
        try Self.runAs(setpriv: tools.setpriv, uid: Self.otherUID, gid: Self.otherUID, groups: groups,
                       tools.vtdbridgectl, ["status", "--json", "--socket", daemon.controlSocket])
    }

    /// An event-channel client from docs/PROTOCOL.md §1.2 alone: connects,
    /// sends its frames in one write, reads up to `replies` reply frames,
    /// and prints one JSON object: how connect and send went, the replies
    /// (type, tag, status, message, payload length), and how the stream
    /// ended ("eof", "reset", or "open" when every expected reply came).
    static let eventClient = #"""
import errno, json, socket, struct, sys
path, replies = sys.argv[1], int(sys.argv[2])
frames = b""
for i, spec in enumerate(sys.argv[3:]):
    kind, _, payload = spec.partition(":")
    body = bytes.fromhex(payload)
    frames += struct.pack("<IIQ", int(kind), len(body), 100 + i) + body
out = {"replies": []}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
try:
    s.connect(path)
except OSError as e:
    out["connect"] = errno.errorcode.get(e.errno, str(e.errno))
    out["error"] = str(e)
    print(json.dumps(out))
    sys.exit(0)
out["connect"] = "ok"
try:
    s.sendall(frames)
    out["send"] = "ok"
except OSError as e:
    out["send"] = errno.errorcode.get(e.errno, str(e.errno))
def exactly(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            if data:
                raise EOFError("partial")
            return None
        data += chunk
    return data
out["end"] = "open"
try:
    while len(out["replies"]) < replies:
        header = exactly(16)
        if header is None:
            out["end"] = "eof"
            break
        kind, length, tag = struct.unpack("<IIQ", header)
        payload = exactly(length) if length else b""
        status, mlen = struct.unpack("<II", payload[:8])
        out["replies"].append({"type": kind, "tag": tag, "status": status, "length": length,
                               "message": payload[8:8 + mlen].decode()})
    if out["end"] == "open" and replies == 0:
        out["end"] = "eof" if exactly(1) is None else "data"
except ConnectionResetError:
    out["end"] = "reset"
except socket.timeout:
    out["end"] = "timeout"
print(json.dumps(out))
"""#

    /// The HELLO payload for the default capabilities, as hex.
    var helloHex: String {
        let caps = IOMMUCapabilities.make()
        return EventCodec.encodeRequest(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap), tag: 0)
            .dropFirst(16).map { String(format: "%02x", $0) }.joined()
    }

    /// Runs the event client as uid 65534 with `frames` ("TYPE:HEXPAYLOAD").
    func eventExchange(as tools: Tools, _ daemon: DaemonHarness, replies: Int, frames: [String],
                       groups: [gid_t] = []) throws -> JSONValue {
        let r = try Self.runAs(setpriv: tools.setpriv, uid: Self.otherUID, gid: Self.otherUID, groups: groups, tools.python,
                               ["-I", "-c", Self.eventClient, daemon.eventSocket, String(replies)] + frames)
        XCTAssertEqual(r.status, 0, "event client failed:\n\(r.stderr)")
        return try JSONValue.parse(r.stdout)
    }

    // MARK: a guest with one mapping

    /// A VMM (this process, uid 0) that has mapped IOVA 0x1000 for 00:03.0.
    func connectGuest(_ daemon: DaemonHarness) throws -> (EventClient, GuestTableWriter<GuestRAM>, FileDescriptor) {
        try daemon.connectGuest(sid)
    }

    func mappings(_ daemon: DaemonHarness) throws -> String {
        try daemon.control().require("mappings", ["guest": "00:03.0"])["mappings"]!.serialized
    }

    func mode(_ path: String) throws -> (mode: Int, uid: uid_t, gid: gid_t, socket: Bool) {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw HarnessError("lstat \(path): \(String(cString: strerror(errno)))") }
        return (Int(st.st_mode & 0o7777), st.st_uid, st.st_gid, st.st_mode & S_IFMT == S_IFSOCK)
    }

    // MARK: 1a. the socket file's mode stops another uid

    func testAnotherUidIsStoppedByTheSocketFileModeWithAClearError() throws {
        let tools = try requireSecondUID()
        let daemon = try reachableDaemon()
        for path in [daemon.eventSocket, daemon.controlSocket] {
            let m = try mode(path)
            XCTAssertTrue(m.socket, path)
            XCTAssertEqual(m.mode, 0o660, "\(path): mode \(String(m.mode, radix: 8))")
            XCTAssertEqual(m.uid, geteuid(), path)
            XCTAssertEqual(m.gid, getegid(), "\(path): without control.group the socket keeps the daemon's group")
        }
        // The directory lets uid 65534 through (reachableDaemon): the file mode is what stops it.

        let ctl = try controlStatus(as: tools, daemon)
        XCTAssertEqual(ctl.status, 2, "exit 2: the daemon could not be reached\n\(ctl.stderr)")
        XCTAssertTrue(ctl.stderr.contains(daemon.controlSocket), ctl.stderr)
        XCTAssertTrue(ctl.stderr.contains("Permission denied"), ctl.stderr)
        XCTAssertTrue(ctl.stderr.contains("0660"), "the hint names the socket's mode: \(ctl.stderr)")
        XCTAssertEqual(ctl.stdout, "")

        let event = try eventExchange(as: tools, daemon, replies: 1, frames: ["1:" + helloHex])
        XCTAssertEqual(event["connect"]?.stringValue, "EACCES", event.serialized)

        // The daemon never saw either: no accept, no refusal logged.
        XCTAssertFalse(daemon.log.contains("peer refused"), daemon.log)
        XCTAssertNoThrow(try daemon.control().require("status"))
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    // MARK: 1b. the daemon refuses another uid by its credentials

    func testAnotherUidIsRefusedByCredentialsOnBothSocketsAndNothingChanges() throws {
        let tools = try requireSecondUID()
        let daemon = try reachableDaemon()
        let (vmm, writer, fd) = try connectGuest(daemon)
        defer { try? fd.close() }
        let before = try mappings(daemon)
        XCTAssertTrue(before.contains("0x1000"), before)
        // The VMM goes away (mappings stay): a refused peer must not be able to take its place.
        vmm.close()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, try daemon.control().require("status")["vmm"]?["connected"]?.boolValue != false { usleep(20_000) }
        // Made connectable, the sockets leave the decision to SO_PEERCRED.
        XCTAssertEqual(chmod(daemon.eventSocket, 0o666), 0)
        XCTAssertEqual(chmod(daemon.controlSocket, 0o666), 0)

        // Control socket: one error reply naming the uid and what to configure, exit 1.
        let ctl = try controlStatus(as: tools, daemon)
        XCTAssertEqual(ctl.status, 1, "exit 1: the daemon refused\nstdout: \(ctl.stdout)\nstderr: \(ctl.stderr)")
        let reply = try JSONValue.parse(ctl.stdout)
        XCTAssertEqual(reply["error"]?["code"]?.stringValue, "permission-denied", ctl.stdout)
        let message = reply["error"]?["message"]?.stringValue ?? ""
        XCTAssertTrue(message.contains("uid \(Self.otherUID)"), message)
        XCTAssertTrue(message.contains("access.uids"), message)
        XCTAssertTrue(message.contains("access.gids"), message)
        XCTAssertTrue(ctl.stderr.contains("permission-denied"), ctl.stderr)

        // Event channel: the would-be VMM's HELLO, RESET and READY get no reply; the connection is closed.
        let event = try eventExchange(as: tools, daemon, replies: 3, frames: ["1:" + helloHex, "5:", "6:"])
        XCTAssertEqual(event["connect"]?.stringValue, "ok", event.serialized)
        XCTAssertEqual(event["replies"]?.arrayValue?.count, 0, "closed without a reply: \(event.serialized)")
        XCTAssertTrue(["eof", "reset"].contains(event["end"]?.stringValue ?? ""), event.serialized)

        // The daemon logged both refusals with the uid, and kept running.
        let log = daemon.log
        XCTAssertTrue(log.contains("control socket: peer refused: uid \(Self.otherUID) is not in access.uids"), log)
        XCTAssertTrue(log.contains("event channel: peer refused: uid \(Self.otherUID) is not in access.uids"), log)
        XCTAssertTrue(daemon.process.isRunning)

        // Nothing changed, and authorized clients are served on both sockets.
        XCTAssertEqual(try mappings(daemon), before, "no mapping changed")
        let status = try daemon.control().require("status")
        XCTAssertEqual(status["vmm"]?["connected"]?.boolValue, false, "the refused peer never became the VMM")
        XCTAssertEqual(status["devices"]?[0]?["unmaps"]?.intValue, 0)
        let again = try EventClient(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        try again.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try again.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 64 << 20, offset: 0)]), fds: [fd])
        try again.require(.setRootTable(writer.rootTable))
        try again.require(.setTranslation(true))
        try again.require(.ready)
        XCTAssertEqual(try daemon.control().require("status")["vmm"]?["pid"]?.intValue, Int(getpid()))
        XCTAssertEqual(try mappings(daemon), before)
        again.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// The control refusal is read whatever the order: a client that only
    /// reads gets the line and then end of stream; one that writes first
    /// (vtdbridgectl) never fails with EPIPE instead of getting the reason.
    func testEveryRefusedControlClientReadsItsReason() throws {
        let tools = try requireSecondUID()
        let daemon = try reachableDaemon()
        XCTAssertEqual(chmod(daemon.controlSocket, 0o666), 0)
        for attempt in 0..<10 {
            let ctl = try controlStatus(as: tools, daemon)
            XCTAssertEqual(ctl.status, 1, "attempt \(attempt): \(ctl.stderr)")
            XCTAssertTrue(ctl.stderr.contains("permission-denied"), "attempt \(attempt): \(ctl.stderr)")
        }
        // A refused client that writes its request a moment after connecting
        // (long after the daemon refused it): the write succeeds, and the
        // client reads the line, then end of stream. One that never writes
        // gets the same.
        let script = """
        import socket, sys, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1])
        if sys.argv[2] == "write":
            time.sleep(0.2)
            s.sendall(b'{"execute":"status","id":1}\\n')
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk: break
            data += chunk
        sys.stdout.write(data.decode())
        """
        for mode in ["write", "read"] {
            let r = try Self.runAs(setpriv: tools.setpriv, uid: Self.otherUID, gid: Self.otherUID, groups: [], tools.python,
                                   ["-I", "-c", script, daemon.controlSocket, mode])
            XCTAssertEqual(r.status, 0, "\(mode): \(r.stderr)")
            let lines = r.stdout.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(mode): \(r.stdout)")
            XCTAssertEqual(try JSONValue.parse(String(lines.first ?? ""))["error"]?["code"]?.stringValue, "permission-denied", mode)
        }
        XCTAssertNoThrow(try daemon.control().require("status"))
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    // MARK: 1c. the same uid, allowed, is accepted: the refusal is the policy

    func testAUidInAccessUidsIsAcceptedOnBothSockets() throws {
        let tools = try requireSecondUID()
        let daemon = try reachableDaemon(environment: ["VTDBRIDGE_ACCESS_UIDS": "0,\(Self.otherUID)"])
        XCTAssertEqual(chmod(daemon.eventSocket, 0o666), 0)
        XCTAssertEqual(chmod(daemon.controlSocket, 0o666), 0)

        let ctl = try controlStatus(as: tools, daemon)
        XCTAssertEqual(ctl.status, 0, ctl.stderr)
        XCTAssertEqual(try JSONValue.parse(ctl.stdout)["name"]?.stringValue, "test", ctl.stdout)

        let event = try eventExchange(as: tools, daemon, replies: 2, frames: ["1:" + helloHex, "9:"])
        let replies = try XCTUnwrap(event["replies"]?.arrayValue, event.serialized)
        XCTAssertEqual(replies.count, 2, event.serialized)
        XCTAssertEqual(replies.first?["type"]?.intValue, 0x8000_0001)
        XCTAssertEqual(replies.first?["tag"]?.intValue, 100)
        XCTAssertEqual(replies.first?["status"]?.intValue, 0, event.serialized)
        XCTAssertEqual(replies.first?["length"]?.intValue, 8 + 12, "HELLO's reply carries its body")
        XCTAssertEqual(replies.last?["type"]?.intValue, 0x8000_0009)
        XCTAssertEqual(replies.last?["status"]?.intValue, 0)

        XCTAssertFalse(daemon.log.contains("peer refused"), daemon.log)
        XCTAssertTrue(daemon.log.contains("uid=\(Self.otherUID)"), "the VMM's uid is logged at connect: \(daemon.log)")
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// access.gids lets a peer in by a supplementary group alone (read with
    /// SO_PEERGROUPS, since SO_PEERCRED has the primary gid only).
    func testASupplementaryGroupInAccessGidsIsAcceptedOnBothSockets() throws {
        let tools = try requireSecondUID()
        let group: gid_t = 4242
        let daemon = try reachableDaemon(environment: ["VTDBRIDGE_ACCESS_UIDS": "0", "VTDBRIDGE_ACCESS_GIDS": "\(group)"])
        XCTAssertEqual(chmod(daemon.eventSocket, 0o666), 0)
        XCTAssertEqual(chmod(daemon.controlSocket, 0o666), 0)

        let ctl = try controlStatus(as: tools, daemon, groups: [group])
        XCTAssertEqual(ctl.status, 0, ctl.stderr)
        let event = try eventExchange(as: tools, daemon, replies: 1, frames: ["1:" + helloHex], groups: [group])
        XCTAssertEqual(event["replies"]?[0]?["status"]?.intValue, 0, event.serialized)
        XCTAssertFalse(daemon.log.contains("peer refused"), daemon.log)

        // Without that group, the same uid is refused.
        let refused = try controlStatus(as: tools, daemon)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stdout.contains("permission-denied"), refused.stdout)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    // MARK: 2. the other socket requirements, where untested elsewhere

    /// A SIGKILLed daemon leaves both socket files behind; the next start
    /// replaces both (with their mode) and serves on both.
    func testStaleSocketsOfAKilledDaemonAreReplacedOnBothPaths() throws {
        let directory = NSTemporaryDirectory() + "vtdbridged-stale-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var first: DaemonHarness? = try DaemonHarness(directory: directory)
        let eventSocket = first!.eventSocket, controlSocket = first!.controlSocket
        XCTAssertEqual(first!.terminate(signal: SIGKILL), 9)
        for path in [eventSocket, controlSocket] {
            XCTAssertTrue(try mode(path).socket, "\(path) is left behind by the crash")
            XCTAssertThrowsError(try UnixConnection.connect(path: path)) {
                XCTAssertEqual(($0 as? SystemError)?.errno, ECONNREFUSED)
            }
        }
        // `first` stays alive until the end: a harness removes its directory on deinit.
        XCTAssertFalse(first!.process.isRunning)

        let second = try DaemonHarness(directory: directory)
        XCTAssertFalse(second.log.contains("cannot start"), second.log)
        for path in [eventSocket, controlSocket] { XCTAssertEqual(try mode(path).mode, 0o660, path) }
        XCTAssertNoThrow(try second.control().require("status"))
        let vmm = try EventClient(path: eventSocket)
        let caps = IOMMUCapabilities.make()
        XCTAssertEqual(try vmm.request(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap)).status, .ok)
        vmm.close()
        XCTAssertEqual(second.terminate(), 0, second.log)
        first = nil
    }

    /// A second instance that shares only the event socket with a live one
    /// exits with a clear error, leaves no file of its own behind, and the
    /// first keeps its event socket: a VMM still reaches it.
    func testASecondDaemonNeverTakesOverALiveEventSocket() throws {
        let daemon = try DaemonHarness()
        let vmm = try EventClient(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        XCTAssertEqual(try vmm.request(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap)).status, .ok)
        var before = stat()
        XCTAssertEqual(lstat(daemon.eventSocket, &before), 0)
        let otherControl = daemon.directory + "/other-control.sock"
        let r = try runTool("vtdbridged", ["--backend", "dry-run", "--event-socket", daemon.eventSocket, "--control-socket", otherControl,
                                           "--state-directory", daemon.stateDirectory + "2"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("another daemon is listening on \(daemon.eventSocket)"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: otherControl), "a failed start leaves nothing behind")
        var after = stat()
        XCTAssertEqual(lstat(daemon.eventSocket, &after), 0)
        XCTAssertEqual(after.st_ino, before.st_ino, "the live socket file is the same")
        // The connected VMM and a new connection both still reach the first daemon.
        XCTAssertEqual(try vmm.request(.ping).status, .ok)
        vmm.close()
        let next = try EventClient(path: daemon.eventSocket)
        XCTAssertEqual(try next.request(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap)).status, .ok)
        next.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// A VMM that pipelines requests and never reads its replies holds up
    /// nobody: control clients are served meanwhile. The daemon stops
    /// reading from it once its unread replies pass a bound (its own writes
    /// then block), and everything it sent is answered, in order, once it
    /// reads.
    func testAVMMThatStopsReadingBlocksOnlyItself() throws {
        let daemon = try DaemonHarness()
        let vmm = try UnixConnection.connect(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        try vmm.sendAll(Array(EventCodec.encodeRequest(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap), tag: 0)))
        let (helloHeader, _) = try XCTUnwrap(try vmm.receiveExactly(count: 16))
        let hello = FrameHeader.decode(helloHeader)
        _ = try vmm.receiveExactly(count: Int(hello.length))

        // PINGs, 4096 per write, until the daemon stops taking them.
        try vmm.setNonBlocking(true)
        var chunk: [UInt8] = []
        for _ in 0..<4096 { chunk += EventCodec.encodeRequest(.ping, tag: 0) }
        var sent = 0
        let limit = 64 << 20
        while sent < limit {
            let r = try chunk.withUnsafeBytes { try vmm.send(UnsafeRawBufferPointer(rebasing: $0[(sent % chunk.count)...]), fds: []) }
            guard case let .sent(n) = r else {
                // Blocked: give the daemon time to catch up; still blocked means it stopped reading.
                var fds = pollfd(fd: vmm.fd, events: Int16(POLLOUT), revents: 0)
                if poll(&fds, 1, 2000) == 0 { break }
                continue
            }
            sent += n
        }
        XCTAssertLessThan(sent, limit, "the daemon kept reading from a VMM that reads no reply (\(sent) bytes taken)")
        // The last write may have stopped inside a frame: finished below.
        let pings = sent / 16, partial = sent % 16

        // Others are served promptly all the while.
        let start = Date()
        for _ in 0..<20 { XCTAssertNoThrow(try daemon.control().require("status")) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertTrue(daemon.process.isRunning)

        // Every PING is answered, in order, once the VMM reads.
        try vmm.setNonBlocking(false)
        for i in 0..<pings {
            guard let (bytes, _) = try vmm.receiveExactly(count: 24) else { return XCTFail("closed after \(i) of \(pings) replies") }
            let header = FrameHeader.decode(Array(bytes[0..<16]))
            XCTAssertEqual(header.type, 0x8000_0009)
            if header.type != 0x8000_0009 { return }
        }
        if partial != 0 {
            let at = sent % chunk.count
            try vmm.sendAll(Array(chunk[at..<(at + 16 - partial)]))
            let (bytes, _) = try XCTUnwrap(try vmm.receiveExactly(count: 24))
            XCTAssertEqual(FrameHeader.decode(Array(bytes[0..<16])).type, 0x8000_0009)
        }
        try vmm.sendAll(Array(EventCodec.encodeRequest(.ping, tag: 77)))
        let (last, _) = try XCTUnwrap(try vmm.receiveExactly(count: 24))
        XCTAssertEqual(FrameHeader.decode(Array(last[0..<16])).tag, 77)
        vmm.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// A VMM that dies in the middle of a pipelined batch: the frames it
    /// sent whole are applied (their replies are never read), the frame cut
    /// off in its payload is not, and the shadow is what the kernel was told:
    /// a reconnect re-syncs to the guest tables with nothing unmapped, and a
    /// replay then finds nothing to do.
    func testAVMMThatDisconnectsMidBatchLeavesAConsistentShadow() throws {
        let daemon = try DaemonHarness()
        var (client, writer, fd) = try connectGuest(daemon)
        defer { try? fd.close() }
        client.close()

        let raw = try UnixConnection.connect(path: daemon.eventSocket)
        let caps = IOMMUCapabilities.make()
        func frame(_ request: EventRequest, tag: UInt64) -> [UInt8] { Array(EventCodec.encodeRequest(request, tag: tag)) }
        func words(_ d: [InvalidationDescriptor]) -> [InvalidationWords] { d.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) } }
        func status(of type: EventType) throws -> EventStatus? {
            guard let (h, _) = try raw.receiveExactly(count: FrameHeader.size) else { return nil }
            let header = FrameHeader.decode(h)
            guard let (p, _) = try raw.receiveExactly(count: Int(header.length)) else { return nil }
            return try EventCodec.decodeReply(requestType: type.rawValue, payload: p).get().status
        }
        // A new session over the kept state (the memory table is kept).
        try raw.sendAll(frame(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap), tag: 1)
            + frame(.setRootTable(writer.rootTable), tag: 2) + frame(.setTranslation(true), tag: 3) + frame(.ready, tag: 4))
        for type in [EventType.hello, .setRootTable, .setTranslation, .ready] { XCTAssertEqual(try status(of: type), .ok) }
        // Two batches in one write, the second cut off half-way through its
        // payload; the VMM then dies without reading a reply.
        var bytes = frame(.invalidate(words(try writer.map(domain: 1, iova: 0x2000, gpa: 0x11000) + [GuestTableWriter<GuestRAM>.wait])), tag: 5)
        let cut = frame(.invalidate(words(try writer.map(domain: 1, iova: 0x3000, gpa: 0x12000)
            + writer.map(domain: 1, iova: 0x4000, gpa: 0x13000) + [GuestTableWriter<GuestRAM>.wait])), tag: 6)
        bytes += cut.prefix(16 + (cut.count - 16) / 2)
        try raw.sendAll(bytes)
        raw.close()

        // The daemon reads to the end of the stream before it sees the close.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, daemon.log.components(separatedBy: "VMM disconnected").count < 3 { usleep(20_000) }
        XCTAssertEqual(daemon.log.components(separatedBy: "VMM disconnected").count, 3, daemon.log)
        let held = try mappings(daemon)
        XCTAssertTrue(held.contains("0x1000") && held.contains("0x2000"), "whole frames applied: \(held)")
        XCTAssertFalse(held.contains("0x3000") || held.contains("0x4000"), "the cut frame applied nothing: \(held)")
        var device = try XCTUnwrap(try daemon.control().require("status")["devices"]?[0])
        XCTAssertEqual(device["mappings"]?.intValue, 2)
        XCTAssertEqual(device["maps"]?.intValue, 2, "one MAP per mapping held")
        XCTAssertEqual(device["unmaps"]?.intValue, 0)

        // Reconnect with the same state: READY syncs to the tables (which do
        // hold 0x3000 and 0x4000), without unmapping anything.
        let again = try EventClient(path: daemon.eventSocket)
        try again.require(.hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap))
        try again.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 64 << 20, offset: 0)]), fds: [fd])
        try again.require(.setRootTable(writer.rootTable))
        try again.require(.setTranslation(true))
        try again.require(.ready)
        device = try XCTUnwrap(try daemon.control().require("status")["devices"]?[0])
        XCTAssertEqual(device["mappings"]?.intValue, 4)
        XCTAssertEqual(device["maps"]?.intValue, 4)
        XCTAssertEqual(device["unmaps"]?.intValue, 0)
        let replay = try daemon.control().require("replay", ["all": true])
        XCTAssertEqual(replay["maps"]?.intValue, 0, "the shadow matches the tables")
        XCTAssertEqual(replay["unmaps"]?.intValue, 0)
        again.close()
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// One control client over control.max-clients gets one error line
    /// saying so, then end of stream; the others are not disturbed, and a
    /// slot that frees up is used again.
    func testAControlClientOverMaxClientsIsToldWhyAndOthersAreServed() throws {
        let daemon = try DaemonHarness(environment: ["VTDBRIDGE_CONTROL_MAX_CLIENTS": "1"])
        // The slot: taken once the daemon has seen the harness's readiness probe close.
        func served() -> ControlClient? {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if let client = try? daemon.control(), (try? client.require("status")) != nil { return client }
                usleep(20_000)
            }
            return nil
        }
        var first: ControlClient? = try XCTUnwrap(served(), daemon.log)
        let second = try UnixConnection.connect(path: daemon.controlSocket)
        let (line, _) = try XCTUnwrap(try second.receiveLine(max: 1 << 16))
        let error = try JSONValue.parse(String(decoding: line, as: UTF8.self))["error"]
        XCTAssertEqual(error?["code"]?.stringValue, "internal")
        XCTAssertTrue(error?["message"]?.stringValue?.contains("control.max-clients = 1") == true, "\(String(describing: error))")
        XCTAssertNil(try second.receiveLine(max: 1 << 16), "then end of stream")
        second.close()
        XCTAssertNoThrow(try first!.require("status"), "the client in the slot is not disturbed")
        // Its slot frees up once the daemon has seen it close.
        first = nil
        XCTAssertNotNil(served(), daemon.log)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }
}
