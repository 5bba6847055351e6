import Glibc
import Posix

/// Small sysfs reads through a `VFIOKernel`, so that tests can fake them.
struct Sysfs {
    let kernel: any VFIOKernel

    /// The target of the symlink at `path`. sysfs links are short; the buffer
    /// grows if the target fills it (readlink truncates silently).
    func readLink(_ path: String) throws(VFIOError) -> String {
        var capacity = 256
        while true {
            var buffer = [UInt8](repeating: 0, count: capacity)
            // Array's withUnsafe*Bytes only rethrows untyped errors, so the
            // typed error travels out in a Result.
            let length = try buffer.withUnsafeMutableBytes { raw in
                Result { () throws(VFIOError) -> Int in
                    try kernelCall("readlink", subject: path) { kernel.readLink(path, into: raw) }
                }
            }.get()
            if length < capacity {
                return String(decoding: buffer[..<length], as: UTF8.self)
            }
            guard capacity < 1 << 16 else {
                throw VFIOError(operation: "readlink", subject: path, errno: ENAMETOOLONG)
            }
            capacity *= 4
        }
    }

    /// The last path component of the symlink's target: the group number of an
    /// `iommu_group` link, the driver name of a `driver` link.
    func linkBasename(_ path: String) throws(VFIOError) -> String {
        let target = try readLink(path)
        return String(target.split(separator: "/").last ?? Substring(target))
    }

    /// The sorted entries of a directory.
    func entries(_ path: String) throws(VFIOError) -> [String] {
        var names: [String] = []
        try kernelCall("opendir", subject: path) { kernel.directoryEntries(path, into: &names) }
        return names
    }

    /// The first `limit` bytes of a small text file, trimmed of whitespace.
    func readText(_ path: String, limit: Int = 4096) throws(VFIOError) -> String {
        let file = try FileDescriptor.open(path, flags: O_RDONLY, kernel: kernel)
        var buffer = [UInt8](repeating: 0, count: limit)
        let kernel = kernel
        let count = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(VFIOError) -> Int in
                try file.vfio("pread") { kernel.pread($0, into: raw, at: 0) }
            }
        }.get()
        // A close error on a sysfs file we only read changes nothing read.
        try? file.close()
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        return String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
