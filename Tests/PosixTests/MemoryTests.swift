import Glibc
import Posix
import XCTest

/// memfd and shared mappings: what a VMM's guest RAM is made of.
final class MemoryTests: XCTestCase {
    func testMemoryFileHasTheSizeReadsAsZeroAndIsCloseOnExec() throws {
        let size: UInt64 = 3 << 20
        let file = try FileDescriptor.memoryFile(name: "guest-ram", size: size)
        XCTAssertEqual(try file.status().size, Int64(size))
        XCTAssertEqual(try file.status().kind, .regular)
        XCTAssertTrue(try file.isCloseOnExec())
        XCTAssertEqual(file.subject, "memfd guest-ram")
        var tail = [UInt8](repeating: 0xff, count: 16)
        XCTAssertEqual(try tail.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) -> Int in try file.read(at: Int64(size) - 16, into: buffer) }
        }.get(), 16)
        XCTAssertEqual(tail, [UInt8](repeating: 0, count: 16), "fresh pages read as zero")
    }

    func testMemoryFileFailureLeaksNothing() {
        let before = openDescriptorCount()
        let error = expectError { try FileDescriptor.memoryFile(name: "too-big", size: UInt64.max) }
        XCTAssertEqual(error?.call, "ftruncate")
        XCTAssertEqual(error?.errno, EFBIG)
        XCTAssertEqual(openDescriptorCount(), before)
    }

    func testSharedMappingSeesWritesThroughTheDescriptorAndBack() throws {
        let file = try FileDescriptor.memoryFile(name: "shared", size: 2 << 20)
        let base = try file.mapShared(length: 1 << 20, offset: 1 << 20, writable: true)
        // Written through the descriptor, seen in the mapping...
        XCTAssertEqual(try [UInt8]([0x42]).withUnsafeBytes { buffer in
            Result { () throws(SystemError) -> Int in try file.write(at: (1 << 20) + 100, from: buffer) }
        }.get(), 1)
        XCTAssertEqual(base.load(fromByteOffset: 100, as: UInt8.self), 0x42)
        // ...and the other way round.
        base.storeBytes(of: 0x99, toByteOffset: 200, as: UInt8.self)
        var back: [UInt8] = [0]
        _ = try back.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) -> Int in try file.read(at: (1 << 20) + 200, into: buffer) }
        }.get()
        XCTAssertEqual(back, [0x99])
        // The mapping outlives the descriptor.
        try file.close()
        XCTAssertEqual(base.load(fromByteOffset: 200, as: UInt8.self), 0x99)
        try SharedMapping.unmap(base, length: 1 << 20)
    }

    func testReadOnlyMappingAndBadArgumentsAreErrors() throws {
        let file = try FileDescriptor.memoryFile(name: "ro", size: 8192)
        let base = try file.mapShared(length: 8192, offset: 0, writable: false)
        try SharedMapping.unmap(base, length: 8192)
        let unaligned = expectError { try file.mapShared(length: 4096, offset: 100, writable: false) }
        XCTAssertEqual(unaligned?.call, "mmap")
        XCTAssertEqual(unaligned?.errno, EINVAL)
        XCTAssertEqual(unaligned?.subject, "memfd ro")
        XCTAssertEqual(expectError { try file.mapShared(length: 0, offset: 0, writable: false) }?.errno, EINVAL)
    }

    func testMemoryLockLimitMatchesGetrlimit() throws {
        let limit = try XCTUnwrap(ResourceLimits.memoryLock())
        var raw = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &raw), 0)
        // RLIM_INFINITY is all ones on Linux.
        XCTAssertEqual(limit.soft, raw.rlim_cur == rlim_t.max ? UInt64.max : UInt64(raw.rlim_cur))
        XCTAssertEqual(limit.hard, raw.rlim_max == rlim_t.max ? UInt64.max : UInt64(raw.rlim_max))
        XCTAssertLessThanOrEqual(limit.soft, limit.hard)
    }

    /// The open descriptors of this process (/proc/self/fd, minus the one
    /// the listing itself uses).
    private func openDescriptorCount() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        while readdir(directory) != nil { count += 1 }
        return count - 3
    }
}
