import CPosix
import Glibc

/// Files: open, metadata, reading and writing, durability.
extension FileDescriptor {
    /// open(2) of `path`, always close-on-exec (a descriptor leaked into a
    /// child would keep a VFIO group busy, or a socket alive, after we exit).
    ///
    /// - Parameters:
    ///   - flags: O_RDONLY, O_RDWR, O_WRONLY | O_CREAT | O_TRUNC, ...
    ///   - mode: the permissions of a file O_CREAT makes (before the umask).
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0) throws(SystemError) -> FileDescriptor {
        let fd = try systemCall("open", subject: path) { cposix_open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(adopting: fd, subject: path)
    }

    /// fstat(2).
    public func status() throws(SystemError) -> FileStatus {
        var raw = stat()
        try call("fstat") { cposix_fstat($0, &raw) }
        return FileStatus(raw)
    }

    /// ftruncate(2) to `size` bytes; EFBIG beyond what off_t holds.
    public func truncate(to size: UInt64) throws(SystemError) {
        try call("ftruncate", detail: "\(size) bytes") { cposix_ftruncate($0, size) }
    }

    /// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the
    /// range reads back as zeros and the whole pages in it stop costing
    /// memory (tmpfs, memfd) or disk; the file's size is unchanged.
    public func punchHole(offset: UInt64, length: UInt64) throws(SystemError) {
        try call("fallocate", detail: "punch \(length) bytes at \(offset)") { cposix_punch_hole($0, offset, length) }
    }

    /// One read(2) into `buffer`: the bytes read, 0 at the end of the file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try call("read") { cposix_read($0, buffer.baseAddress, buffer.count) }
    }

    /// Everything from the current offset to the end of the file, refusing
    /// (EFBIG) more than `limit` bytes.
    public func readToEnd(limit: Int = 64 << 20) throws(SystemError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let count = try chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) -> Int in try read(into: buffer) }
            }.get()
            if count == 0 { return bytes }
            guard bytes.count + count <= limit else {
                throw error("read", errno: EFBIG, detail: "more than \(limit) bytes")
            }
            bytes += chunk[..<count]
        }
    }

    /// One write(2) from `buffer`: the bytes written, possibly fewer.
    public func write(from buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try call("write") { cposix_write($0, buffer.baseAddress, buffer.count) }
    }

    /// Writes every byte, continuing after short writes.
    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let written = try bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemError) -> Int in
                    try write(from: UnsafeRawBufferPointer(rebasing: buffer[done...]))
                }
            }.get()
            guard written > 0 else {
                throw error("write", errno: EIO, detail: "wrote nothing after \(done) of \(bytes.count) bytes")
            }
            done += written
        }
    }

    /// One pread(2) at `offset`: the bytes read, 0 past the end.
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try call("pread", detail: "offset \(offset)") { cposix_pread($0, buffer.baseAddress, buffer.count, offset) }
    }

    /// One pwrite(2) at `offset`: the bytes written, possibly fewer.
    public func write(at offset: Int64, from buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try call("pwrite", detail: "offset \(offset)") { cposix_pwrite($0, buffer.baseAddress, buffer.count, offset) }
    }

    /// fsync(2): the file's data and metadata are on stable storage. On a
    /// directory, its entries are (what makes a rename durable).
    public func sync() throws(SystemError) {
        try call("fsync") { cposix_fsync($0) }
    }

    /// A second descriptor for the same open file (F_DUPFD_CLOEXEC), owned
    /// by the caller; closed with close(2) whatever closes this one.
    public func duplicate() throws(SystemError) -> FileDescriptor {
        let copy = try call("fcntl(F_DUPFD_CLOEXEC)") { cposix_dup_cloexec($0) }
        return FileDescriptor(adopting: copy, subject: subject)
    }

    /// Takes ownership of descriptor `number`, inherited from the process
    /// that started this one (systemd's LISTEN_FDS), and makes it
    /// close-on-exec, which inherited descriptors are not. A number that is
    /// not open is an error here (EBADF), not a programming error: it came
    /// from the environment.
    public static func inherited(_ number: Int32, subject: String) throws(SystemError) -> FileDescriptor {
        let result = cposix_set_cloexec(number)
        if result < 0 { throw SystemError(call: "fcntl(F_SETFD)", errno: -result, subject: subject) }
        return FileDescriptor(adopting: number, subject: subject)
    }

    /// Whether FD_CLOEXEC is set.
    public func isCloseOnExec() throws(SystemError) -> Bool {
        try call("fcntl(F_GETFD)") { cposix_is_cloexec($0) } == 1
    }
}
