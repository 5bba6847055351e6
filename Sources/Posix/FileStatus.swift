import Glibc

/// What stat(2) says about a file, in the terms this project asks about:
/// which file it is (device and inode), its size, and its kind.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, socket, characterDevice, blockDevice, fifo, unknown
    }

    public var device: UInt64
    public var inode: UInt64
    /// st_size: bytes for a regular file (a memfd is one); 0 for most devices.
    public var size: Int64
    /// The permission bits (st_mode & 07777).
    public var permissions: mode_t
    public var kind: Kind
    /// st_blocks × 512: the storage the file really holds, less than `size`
    /// for a sparse file (a memfd's unwritten or punched pages).
    public var allocatedBytes: Int64 = 0

    public init(device: UInt64, inode: UInt64, size: Int64, permissions: mode_t, kind: Kind) {
        self.device = device
        self.inode = inode
        self.size = size
        self.permissions = permissions
        self.kind = kind
    }

    init(_ raw: stat) {
        // <sys/stat.h> S_IFMT and its values; Glibc imports the macros as
        // plain numbers on some releases and not at all on others.
        let kind: Kind = switch raw.st_mode & 0o170000 {
        case 0o100000: .regular
        case 0o040000: .directory
        case 0o120000: .symbolicLink
        case 0o140000: .socket
        case 0o020000: .characterDevice
        case 0o060000: .blockDevice
        case 0o010000: .fifo
        default: .unknown
        }
        self.init(device: UInt64(raw.st_dev), inode: UInt64(raw.st_ino), size: Int64(raw.st_size),
                  permissions: raw.st_mode & 0o7777, kind: kind)
        allocatedBytes = Int64(raw.st_blocks) * 512
    }

    /// The same file: device and inode match.
    public func isSameFile(as other: FileStatus) -> Bool {
        device == other.device && inode == other.inode
    }
}
