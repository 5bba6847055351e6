import Glibc
import UnixIO
import XCTest

final class DescriptorTests: SocketTestCase {
    func testExplicitCloseHappensOnce() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        let descriptor = Descriptor(adopting: readEnd)
        XCTAssertTrue(descriptor.isOpen)
        XCTAssertEqual(descriptor.rawValue, readEnd)
        try descriptor.close()
        XCTAssertFalse(isOpen(readEnd))
        XCTAssertFalse(descriptor.isOpen)
        XCTAssertEqual(descriptor.rawValue, -1)

        // The number is reused by the next open; a second close must not touch it.
        let (reused, reusedWrite) = makePipe()
        defer { close(reused); close(reusedWrite) }
        XCTAssertEqual(reused, readEnd, "the kernel hands out the lowest free number")
        let again = expectError { try descriptor.close() }
        XCTAssertEqual(again?.errno, EBADF)
        XCTAssertEqual(again?.call, "close")
        XCTAssertTrue(isOpen(reused))
    }

    func testDeinitClosesAnOpenDescriptor() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        do {
            let descriptor = Descriptor(adopting: readEnd)
            XCTAssertTrue(descriptor.isOpen)
        }
        XCTAssertFalse(isOpen(readEnd))
    }

    func testTakeHandsOwnershipAway() {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        var taken: Int32 = -1
        do {
            let descriptor = Descriptor(adopting: readEnd)
            taken = descriptor.take()
            XCTAssertFalse(descriptor.isOpen)
            XCTAssertEqual(expectError { try descriptor.close() }?.errno, EBADF)
        }
        XCTAssertEqual(taken, readEnd)
        XCTAssertTrue(isOpen(readEnd), "a taken descriptor is not closed by its former owner")
        close(readEnd)
    }
}
