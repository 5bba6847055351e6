import Posix

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
        guard let status = try FileSystem.linkStatus(path) else { return nil }
        return FileIdentity(device: status.device, inode: status.inode, isSocket: status.kind == .socket)
    }
}
