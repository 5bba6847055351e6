import Bridge
import Posix
import XCTest
@testable import Daemon

/// What a vfio-user session hands to the next process: the client's files,
/// kept as descriptors, mapped again there, and each region found at the
/// new process's address in the same file and offset.
final class VFIOUserMemoryHandOverTests: XCTestCase {
    func testTheFilesMapAgainAndRegionsAreFoundByFileAndOffset() throws {
        let ram = try FileDescriptor.memoryFile(name: "client RAM", size: 1 << 20)
        let first = VFIOUserMemory()
        let host = try first.resolve(ram, offset: 0x3000, size: 0x2000, writable: true)
        try ram.close()   // the client's copy goes; the session keeps its own
        XCTAssertEqual(first.files.count, 1)
        let location = try XCTUnwrap(first.fileLocation(ofHostAddress: host, size: 0x2000))
        XCTAssertEqual(location.offset, 0x3000)
        XCTAssertNil(first.fileLocation(ofHostAddress: host, size: 2 << 20), "a range past the file is nowhere")
        // Bytes written through the first mapping are the file's.
        UnsafeMutableRawPointer(bitPattern: UInt(host))!.storeBytes(of: 0x5a5a_1234, as: UInt32.self)

        // The next process: the stored descriptor, mapped anew.
        let second = VFIOUserMemory()
        XCTAssertEqual(second.adopt([try first.files[0].descriptor.duplicate()]), [])
        let again = try XCTUnwrap(second.hostAddress(of: location, size: 0x2000))
        XCTAssertNotEqual(again, host, "another mapping of the same file")
        XCTAssertEqual(UnsafeRawPointer(bitPattern: UInt(again))!.load(as: UInt32.self), 0x5a5a_1234)
        XCTAssertEqual(second.fileLocation(ofHostAddress: again, size: 0x2000), location)
        XCTAssertNil(second.hostAddress(of: FileLocation(device: location.device, inode: location.inode + 1, offset: 0x3000), size: 0x1000))

        // What cannot be guest RAM is refused, and closed.
        var pipe: [Int32] = [0, 0]
        XCTAssertEqual(Glibc.pipe(&pipe), 0)
        close(pipe[1])
        XCTAssertEqual(second.adopt([FileDescriptor(adopting: pipe[0])]).count, 1)
        XCTAssertEqual(second.files.count, 1)
        first.releaseAll()
        second.releaseAll()
        XCTAssertEqual(second.files.count, 0)
    }
}
