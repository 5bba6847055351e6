import CPosix
import Glibc

extension FileDescriptor {
    /// mmap(2) of `length` bytes of this file at `offset`, MAP_SHARED: what
    /// another process writes through its own mapping or descriptor shows
    /// here. Readable, and writable if asked. The mapping holds its own
    /// reference to the file and outlives this descriptor; release it with
    /// `SharedMapping.unmap`.
    public func mapShared(length: Int, offset: UInt64, writable: Bool) throws(SystemError) -> UnsafeMutableRawPointer {
        guard length > 0, let start = Int64(exactly: offset) else {
            throw error("mmap", errno: EINVAL, detail: "\(length) bytes at offset \(offset)")
        }
        var address: UnsafeMutableRawPointer?
        try call("mmap", detail: "\(length) bytes at offset \(offset)") {
            cposix_mmap_shared($0, length, start, writable ? 1 : 0, &address)
        }
        return address!
    }
}

/// Releasing what `FileDescriptor.mapShared` mapped.
public enum SharedMapping {
    /// munmap(2) of exactly what one `mapShared` returned. Fails only when
    /// given something else (EINVAL).
    public static func unmap(_ address: UnsafeMutableRawPointer, length: Int) throws(SystemError) {
        try systemCall("munmap", detail: "\(length) bytes at 0x\(String(UInt(bitPattern: address), radix: 16))") {
            cposix_munmap(address, length)
        }
    }
}
