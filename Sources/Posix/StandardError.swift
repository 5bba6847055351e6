import CPosix

/// Messages for a person on standard error (fd 2), written with write(2)
/// rather than Foundation's FileHandle: the daemon, the CLI and the
/// simulator report their fatal errors this way, and the daemon links no
/// Foundation. fd 2 is not ours to own, so this is not a `FileDescriptor`.
public enum FileHandleStderr {
    /// Writes all of `text`, going on after a short write (a pipe may take
    /// less than asked). A failure is dropped: with standard error gone there
    /// is nowhere left to report it.
    public static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = retryingEINTR { cposix_write(2, bytes.baseAddress! + offset, bytes.count - offset) }
                guard n > 0 else { return }
                offset += n
            }
        }
    }
}
