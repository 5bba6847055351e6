import CSocket
import Glibc

/// Which file a path names right now, by device and inode, and what kind it
/// is. Comparing identities tells "our socket" from one someone else bound
/// at the same path later.
struct FileIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
    var isSocket: Bool

    /// lstat(2) of `path` (a symbolic link is described, not followed), or
    /// nil if nothing is there.
    static func of(path: String) throws(SystemError) -> FileIdentity? {
        var info = stat()
        let result = retryingEINTR { csocket_lstat(path, &info) }
        if result == -ENOENT { return nil }
        try check(result, "lstat", path)
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
                            isSocket: info.st_mode & fileTypeMask == socketFileType)
    }
}

// <sys/stat.h> S_IFMT and S_IFSOCK: the file type bits of st_mode.
private let fileTypeMask: mode_t = 0o170000
private let socketFileType: mode_t = 0o140000
