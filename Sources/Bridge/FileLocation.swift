/// Where the bytes behind a host address live: a file, named by device and
/// inode as stat(2) gives them, and a byte offset into it.
///
/// Host addresses mean nothing to the next process, but the file does: a
/// VMM that reconnects after a restart sends the same memfd (or the same
/// /dev/shm file) again, and the new process finds its new host address for
/// a mapping the old process made. That is what lets a restarted daemon
/// recognize the kernel's mappings as the ones the guest's tables still ask
/// for, and leave them alone.
public struct FileLocation: Sendable, Hashable, CustomStringConvertible {
    public var device: UInt64
    public var inode: UInt64
    public var offset: UInt64

    public init(device: UInt64, inode: UInt64, offset: UInt64) {
        self.device = device
        self.inode = inode
        self.offset = offset
    }

    /// No file is known (memory not from a file the daemon mapped): a
    /// mapping recorded with it is never taken for a current one.
    public static let unknown = FileLocation(device: 0, inode: 0, offset: 0)

    public var isKnown: Bool { device != 0 || inode != 0 }

    public var description: String {
        isKnown ? "dev \(device) ino \(inode) +0x\(String(offset, radix: 16))" : "unknown file"
    }
}

/// Host memory whose backing files are known: guest RAM, or the files a
/// vfio-user client sent. The mapping journal records through it.
public protocol HostMemoryFiles: AnyObject {
    /// The file and offset of [hostAddress, hostAddress + size), if the
    /// range lies in one mapped file.
    func fileLocation(ofHostAddress hostAddress: UInt64, size: UInt64) -> FileLocation?
    /// This process's address of `location`, if the file is mapped here and
    /// covers `size` bytes from it.
    func hostAddress(of location: FileLocation, size: UInt64) -> UInt64?
}
