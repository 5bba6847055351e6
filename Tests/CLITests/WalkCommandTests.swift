import Bridge
import Foundation
import VTd
import VTdGuest
import XCTest

/// `vtdbridgectl walk`, run as a real process over a RAM image file.
final class WalkCommandTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vtd-walk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    var binary: URL { Bundle.main.bundleURL.appendingPathComponent("vtdbridgectl") }

    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// Writes a RAM image: 16 MiB, tables in its top 4 MiB, device 00:03.0 in
    /// domain 5 with a page, a read-only 2 MiB leaf, a leaf outside RAM and a
    /// leaf with a reserved bit.
    func makeImage() throws -> (path: String, root: UInt64) {
        let path = directory.appendingPathComponent("ram.img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        XCTAssertEqual(truncate(path, 16 << 20), 0)
        let ram = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: 16 << 20, backing: .path(path, offset: 0))])
        var writer = try GuestTableWriter(memory: ram, caps: .make(), tableArea: (12 << 20)..<(16 << 20))
        let sid = SourceID("00:03.0")!
        _ = try writer.attach(sid, domain: 5)
        _ = try writer.map(domain: 5, iova: 0x1000, gpa: 0x8000)
        _ = try writer.map(domain: 5, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21, permission: .read)
        _ = try writer.map(domain: 5, iova: 0x3000, gpa: 0x1_0000_0000)
        _ = try writer.map(domain: 5, iova: 0x4000, gpa: 0x9000)
        let slot = writer.existingSlot(domain: 5, iova: 0x4000, level: 1)!
        writer.store(writer.load(slot) | 1 << 11, at: slot)
        return (path, writer.rootTable)
    }

    func testJSONNamesEveryMappingAndFault() throws {
        let (path, root) = try makeImage()
        let r = try run(["walk", "--memory", path, "--root-table", "0x" + String(root, radix: 16), "--device", "00:03.0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["device"] as? String, "00:03.0")
        XCTAssertEqual(object["domain"] as? Int, 5)
        XCTAssertEqual(object["levels"] as? Int, 4)
        let mappings = try XCTUnwrap(object["mappings"] as? [[String: Any]])
        XCTAssertEqual(mappings.count, 2)
        XCTAssertEqual(mappings[0]["iova"] as? String, "0x1000")
        XCTAssertEqual(mappings[0]["gpa"] as? String, "0x8000")
        XCTAssertEqual(mappings[0]["size"] as? String, "0x1000")
        XCTAssertEqual(mappings[0]["write"] as? Bool, true)
        XCTAssertEqual(mappings[1]["iova"] as? String, "0x200000")
        XCTAssertEqual(mappings[1]["size"] as? String, "0x200000")
        XCTAssertEqual(mappings[1]["read"] as? Bool, true)
        XCTAssertEqual(mappings[1]["write"] as? Bool, false)
        let faults = try XCTUnwrap(object["faults"] as? [[String: Any]])
        XCTAssertEqual(faults.compactMap { $0["reason"] as? String }.sorted(), ["entry-reserved", "leaf-outside-ram"])
    }

    func testTextOutputAndRegionForm() throws {
        let (path, root) = try makeImage()
        let r = try run(["walk", "--region", "0:16M@\(path)", "--root-table", String(root), "--device", "0000:00:03.0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("device 00:03.0: translated, domain 5, 4-level"), r.stdout)
        // Sizes in binary units, exact (ByteSize): 4 KiB + 2 MiB = 2052 KiB.
        XCTAssertTrue(r.stdout.contains("2 mapping(s), 2052 KiB\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("IOVA      GPA       SIZE   PERM\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("0x1000    0x8000    4 KiB  rw\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("0x200000  0x400000  2 MiB  r-\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("2 fault(s)"), r.stdout)
    }

    func testADeviceWithoutAContextEntryMapsNothing() throws {
        let (path, root) = try makeImage()
        let r = try run(["walk", "--memory", path, "--root-table", String(root), "--device", "00:04.0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The serializer's key order (sorted), as the daemon's `mappings` reply.
        XCTAssertEqual(r.stdout, #"{"device":"00:04.0","domain":null,"faults":[],"levels":null,"mappings":[],"mode":"not-present"}"# + "\n")
    }

    func testBadArgumentsAreClearErrors() throws {
        let (path, _) = try makeImage()
        // A bad command line: exit 64, with walk's usage (not the root's).
        var r = try run(["walk", "--memory", path, "--root-table", "0x1000", "--device", "3"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--device 3: not a source-id"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage: vtdbridgectl walk "), r.stderr)
        r = try run(["walk", "--region", "0:16M", "--root-table", "0x1000", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("expected GPA:SIZE@PATH[+OFFSET]"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage: vtdbridgectl walk "), r.stderr)
        r = try run(["walk", "--memory", "\(path)@0xzz", "--root-table", "0x1000", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("'0xzz' is not an address"), r.stderr)
        r = try run(["walk", "--root-table", "0x1000", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("no guest RAM given"), r.stderr)
        // Guest memory that cannot be read: exit 1 (README), no usage.
        r = try run(["walk", "--memory", "/nonexistent/ram", "--root-table", "0x1000", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("cannot stat /nonexistent/ram"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Usage:"), r.stderr)
        r = try run(["walk", "--region", "0:32M@\(path)", "--root-table", "0x1000", "--device", "00:03.0"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("backing file is 16777216 bytes"), r.stderr)
        // A root table outside RAM is not an error of the tool: it is a fault to show.
        r = try run(["walk", "--memory", path, "--root-table", "0x40000000", "--device", "00:03.0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("root-table-outside-ram"), r.stdout)
    }

    func testHelpDescribesTheForms() throws {
        let r = try run(["walk", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("GPA:SIZE@PATH[+OFFSET]"))
        XCTAssertTrue(r.stdout.contains("--json"))
    }
}
