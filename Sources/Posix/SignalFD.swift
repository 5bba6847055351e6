import CPosix
import Glibc

extension FileDescriptor {
    /// Blocks `signals` in the calling thread and returns a non-blocking,
    /// close-on-exec signalfd that reports them. EINVAL for an invalid signal
    /// number; nothing is blocked then.
    ///
    /// Only the calling thread's mask changes; threads created afterwards
    /// inherit it (see UnixIO's SignalDescriptor for what that means).
    public static func signalDescriptor(blocking signals: [Int32]) throws(SystemError) -> FileDescriptor {
        let fd = try signals.withUnsafeBufferPointer { buffer in
            Result { () throws(SystemError) -> Int32 in
                try systemCall("signalfd", subject: "signals \(signals)") {
                    cposix_signalfd_create(buffer.baseAddress, Int32(buffer.count))
                }
            }
        }.get()
        return FileDescriptor(adopting: fd, subject: "signalfd \(signals)")
    }

    /// Reads one pending signal from a signalfd; nil when none is pending.
    public func readSignal() throws(SystemError) -> Int32? {
        var signo: Int32 = 0
        let result = try rawCall("read(signalfd)") { cposix_signalfd_read($0, &signo) }
        if result == -EAGAIN { return nil }
        if result < 0 { throw error("read(signalfd)", errno: -result) }
        return signo
    }
}
