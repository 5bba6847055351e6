import Glibc
import Posix
import XCTest

/// Files and paths: open, read and write, rename, mkdir -p, status; and
/// errors that name the call and the path.
final class FileTests: XCTestCase {
    func testOpenOfAMissingFileNamesCallAndPath() {
        let scratch = ScratchDirectory()
        let path = scratch.file("missing")
        let error = expectError { try FileDescriptor.open(path, flags: O_RDONLY) }
        XCTAssertEqual(error?.call, "open")
        XCTAssertEqual(error?.subject, path)
        XCTAssertEqual(error?.errno, ENOENT)
        XCTAssertEqual(error?.description, "open(\(path)): No such file or directory (errno 2)")
    }

    func testWriteSyncRenameAndReadBack() throws {
        let scratch = ScratchDirectory()
        let temporary = scratch.file("state.tmp")
        let final = scratch.file("state")
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let file = try FileDescriptor.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o640)
        XCTAssertTrue(try file.isCloseOnExec(), "open always adds O_CLOEXEC")
        try file.writeAll(bytes)
        try file.sync()
        try file.close()
        try FileSystem.rename(temporary, to: final)
        XCTAssertNil(try FileSystem.linkStatus(temporary))
        let status = try XCTUnwrap(try FileSystem.linkStatus(final))
        XCTAssertEqual(status.kind, .regular)
        XCTAssertEqual(status.size, Int64(bytes.count))
        XCTAssertEqual(status.permissions & 0o600, 0o600)
        XCTAssertEqual(try FileDescriptor.open(final, flags: O_RDONLY).readToEnd(), bytes)
        XCTAssertEqual(expectError { try FileDescriptor.open(final, flags: O_RDONLY).readToEnd(limit: 1000) }?.errno, EFBIG)
    }

    func testPositionalReadAndWrite() throws {
        let scratch = ScratchDirectory()
        let file = try FileDescriptor.open(scratch.file("data"), flags: O_RDWR | O_CREAT, mode: 0o600)
        try file.truncate(to: 8)
        XCTAssertEqual(try [UInt8]([9, 8]).withUnsafeBytes { buffer in
            Result { () throws(SystemError) -> Int in try file.write(at: 2, from: buffer) }
        }.get(), 2)
        var back = [UInt8](repeating: 0xff, count: 8)
        XCTAssertEqual(try back.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) -> Int in try file.read(at: 0, into: buffer) }
        }.get(), 8)
        XCTAssertEqual(back, [0, 0, 9, 8, 0, 0, 0, 0])
        XCTAssertEqual(try file.status().size, 8)
    }

    func testMakeDirectoriesCreatesParentsAndAcceptsExistingOnes() throws {
        let scratch = ScratchDirectory()
        let deep = scratch.file("a/b/c")
        try FileSystem.makeDirectories(deep, mode: 0o750)
        XCTAssertEqual(try FileSystem.status(deep)?.kind, .directory)
        XCTAssertEqual(try FileSystem.status(deep)?.permissions, 0o750 & ~currentUmask())
        try FileSystem.makeDirectories(deep, mode: 0o750)
        defer { rmdir(deep); rmdir(scratch.file("a/b")); rmdir(scratch.file("a")) }

        // A file in the way is named, with the call.
        let file = scratch.file("plain")
        try FileDescriptor.open(file, flags: O_WRONLY | O_CREAT, mode: 0o600).close()
        let blocked = expectError { try FileSystem.makeDirectories(file + "/state", mode: 0o750) }
        XCTAssertEqual(blocked?.call, "mkdir")
        XCTAssertEqual(blocked?.subject, file + "/state")
        XCTAssertEqual(blocked?.errno, ENOTDIR)
        let existing = expectError { try FileSystem.makeDirectories(file, mode: 0o750) }
        XCTAssertEqual(existing?.errno, EEXIST)
        XCTAssertEqual(existing?.subject, file)
    }

    func testRemoveReportsWhetherSomethingWasThere() throws {
        let scratch = ScratchDirectory()
        let path = scratch.file("gone")
        try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT, mode: 0o600).close()
        XCTAssertTrue(try FileSystem.remove(path))
        XCTAssertFalse(try FileSystem.remove(path))
    }

    func testDuplicateIsTheSameFileAndOwnedSeparately() throws {
        let scratch = ScratchDirectory()
        let original = try FileDescriptor.open(scratch.file("dup"), flags: O_RDWR | O_CREAT, mode: 0o600)
        let copy = try original.duplicate()
        XCTAssertNotEqual(copy.number, original.number)
        XCTAssertTrue(try copy.status().isSameFile(as: original.status()))
        XCTAssertTrue(try copy.isCloseOnExec())
        try original.close()
        XCTAssertEqual(try copy.status().size, 0, "the copy stays open")
    }

    private func currentUmask() -> mode_t {
        let mask = umask(0o022)
        umask(mask)
        return mask
    }
}
