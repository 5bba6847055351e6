import CPosix
import Glibc

/// Calls on paths rather than descriptors.
public enum FileSystem {
    /// lstat(2): a symbolic link is described, not followed. nil if nothing
    /// is at `path`.
    public static func linkStatus(_ path: String) throws(SystemError) -> FileStatus? {
        var raw = stat()
        let result = retryingEINTR { cposix_lstat(path, &raw) }
        if result == -ENOENT { return nil }
        try SystemError.check(result, "lstat", subject: path)
        return FileStatus(raw)
    }

    /// stat(2): symbolic links are followed. nil if nothing is at `path`.
    public static func status(_ path: String) throws(SystemError) -> FileStatus? {
        var raw = stat()
        let result = retryingEINTR { cposix_stat(path, &raw) }
        if result == -ENOENT { return nil }
        try SystemError.check(result, "stat", subject: path)
        return FileStatus(raw)
    }

    /// mkdir(2) of `path` with `mode` (before the umask). Returns false if
    /// a directory (or a link to one) is already there; anything else there
    /// is EEXIST.
    @discardableResult
    public static func makeDirectory(_ path: String, mode: mode_t) throws(SystemError) -> Bool {
        let result = retryingEINTR { cposix_mkdir(path, mode) }
        if result == -EEXIST {
            guard try status(path)?.kind == .directory else {
                throw SystemError(call: "mkdir", errno: EEXIST, subject: path, detail: "it exists and is not a directory")
            }
            return false
        }
        try SystemError.check(result, "mkdir", subject: path)
        return true
    }

    /// `makeDirectory` of `path` and of every missing parent, each with
    /// `mode`, as `mkdir -p` does. An existing directory is fine. Something
    /// other than a directory in the way makes the next mkdir fail with
    /// ENOTDIR, naming the path it was for.
    public static func makeDirectories(_ path: String, mode: mode_t) throws(SystemError) {
        let components = path.split(separator: "/")
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in components.dropLast() {
            prefix += "/" + component
            let result = retryingEINTR { cposix_mkdir(prefix, mode) }
            if result != -EEXIST { try SystemError.check(result, "mkdir", subject: prefix) }
        }
        guard let last = components.last else { return }
        try makeDirectory(prefix + "/" + last, mode: mode)
    }

    /// rename(2): replaces `to` atomically.
    public static func rename(_ from: String, to: String) throws(SystemError) {
        try systemCall("rename", subject: from, detail: "to \(to)") { cposix_rename(from, to) }
    }

    /// unlink(2). Returns false if nothing was there (ENOENT).
    @discardableResult
    public static func remove(_ path: String) throws(SystemError) -> Bool {
        let result = retryingEINTR { cposix_unlink(path) }
        if result == -ENOENT { return false }
        try SystemError.check(result, "unlink", subject: path)
        return true
    }

    /// chmod(2).
    public static func setPermissions(_ path: String, _ mode: mode_t) throws(SystemError) {
        try systemCall("chmod", subject: path, detail: "to \(String(mode, radix: 8))") { cposix_chmod(path, mode) }
    }

    /// lchown(2) of the group only; the owner stays.
    public static func setGroup(_ path: String, _ group: gid_t) throws(SystemError) {
        try systemCall("chown", subject: path, detail: "to group \(group)") { cposix_chgrp(path, group) }
    }
}
