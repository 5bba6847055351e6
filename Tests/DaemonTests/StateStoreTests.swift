@testable import Daemon
import Foundation
import Glibc
import Posix
import Wire
import XCTest

/// The state file: written with Wire's serializer, read with its parser,
/// replaced atomically, and every I/O failure an errno naming call and path.
final class StateStoreTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        directory = NSTemporaryDirectory() + "state-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testSaveThenLoadRoundTripsAndLeavesNoTemporaryFile() throws {
        let store = StateStore(directory: directory + "/nested/state")
        try store.prepare()
        XCTAssertEqual(try store.load(), [], "no file yet: nothing recorded")
        let records = [StateStore.Record(host: "0000:05:00.0", guest: "00:05.0", quota: 100),
                       StateStore.Record(host: "group:7", guest: "00:06.0", quota: nil)]
        try store.save(records)
        XCTAssertEqual(try store.load(), records)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path + ".tmp"))
        // The file is what the serializer writes: version 1, the list.
        let text = try String(contentsOfFile: store.path, encoding: .utf8)
        let value = try JSONValue.parse(text)
        XCTAssertEqual(value["version"]?.intValue, 1)
        XCTAssertEqual(value["attachments"]?[0]?["quota"]?.intValue, 100)
        XCTAssertNil(value["attachments"]?[1]?["quota"])
        try store.save([])
        XCTAssertEqual(try store.load(), [])
    }

    /// Daemons before this one wrote the file with Foundation's
    /// JSONEncoder, pretty-printed; an upgrade must still restore it.
    func testReadsTheFileEarlierDaemonsWrote() throws {
        let store = StateStore(directory: directory)
        try store.prepare()
        let earlier = """
        {
          "attachments" : [
            {
              "guest" : "00:05.0",
              "host" : "0000:05:00.0",
              "quota" : 100
            }
          ],
          "version" : 1
        }
        """
        XCTAssertTrue(FileManager.default.createFile(atPath: store.path, contents: Data(earlier.utf8)))
        XCTAssertEqual(try store.load(), [StateStore.Record(host: "0000:05:00.0", guest: "00:05.0", quota: 100)])
    }

    func testAFileThatIsNotAnAttachmentListNamesItsPathAndWhy() throws {
        let store = StateStore(directory: directory)
        try store.prepare()
        for (text, why) in [("{\"attachments\": [", "invalid JSON"),
                            ("[]", "not an object"),
                            ("{\"attachments\": []}", "\"version\""),
                            ("{\"version\": 1, \"attachments\": [{\"host\": \"0000:05:00.0\"}]}", "attachment 0"),
                            ("{\"version\": 1, \"attachments\": [{\"host\": \"h\", \"guest\": \"g\", \"quota\": \"x\"}]}", "quota")] {
            XCTAssertTrue(FileManager.default.createFile(atPath: store.path, contents: Data(text.utf8)))
            do {
                _ = try store.load()
                XCTFail("\(text) was accepted")
            } catch {
                guard case .invalid(let path, let reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(path, store.path)
                XCTAssertTrue(reason.contains(why), "\(text): \(reason)")
                XCTAssertTrue(error.description.contains("move it aside"), error.description)
            }
        }
    }

    func testADirectoryInTheWayIsAnErrnoNamingCallAndPath() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/plain"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: nil))
        let store = StateStore(directory: file + "/state")
        do {
            try store.prepare()
            XCTFail("a state directory under a file was accepted")
        } catch {
            guard case .system(let system) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(system, SystemError(call: "mkdir", errno: ENOTDIR, subject: file + "/state"))
            XCTAssertEqual(error.description, "mkdir(\(file)/state): Not a directory (errno 20)")
        }
    }

    /// A directory the daemon may not create in: sysfs refuses mkdir even
    /// to root (EPERM), as a root-owned /var/lib refuses another user (EACCES).
    func testAStateDirectoryWithoutPermissionIsAnErrnoNotAFoundationMessage() throws {
        let path = "/sys/vtd-bridge-state-test-\(getpid())"
        let store = StateStore(directory: path)
        do {
            try store.prepare()
            XCTFail("mkdir in \(path) succeeded")
        } catch {
            guard case .system(let system) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(system.call, "mkdir")
            XCTAssertEqual(system.subject, path)
            XCTAssertTrue([EPERM, EACCES].contains(system.errno), "\(system)")
            XCTAssertTrue(error.description.hasPrefix("mkdir(\(path)): "), error.description)
        }
        // And from the daemon itself: the same message on stderr, exit 1.
        let run = directory + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let daemon = try runTool("vtdbridged", ["--backend", "dry-run", "--event-socket", run + "/event.sock",
                                                "--control-socket", run + "/control.sock", "--state-directory", path])
        XCTAssertEqual(daemon.status, 1, daemon.stderr)
        XCTAssertTrue(daemon.stderr.contains("mkdir(\(path)): "), daemon.stderr)
        XCTAssertTrue(daemon.stderr.contains("(errno "), daemon.stderr)
        XCTAssertFalse(daemon.stderr.contains("NSCocoaErrorDomain"), daemon.stderr)
    }
}
