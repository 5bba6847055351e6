import Glibc

/// Calls `body` again for as long as it returns -EINTR, and returns its
/// first other result: a value >= 0, or -errno.
///
/// This is the only place that retries EINTR (swift-system's policy: one
/// helper, not a loop per call site). close(2) never goes through it: Linux
/// releases the descriptor even when close reports EINTR (fs/open.c,
/// close_fd drops the table entry before the file's flush can be
/// interrupted), so a retry could close a number another thread has just
/// been given. `FileDescriptor.close` calls its closer exactly once.
@inlinable
public func retryingEINTR<T: FixedWidthInteger & SignedInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result != -T(EINTR) { return result }
    }
}

/// `retryingEINTR`, then `SystemError.check`: for a call that is not made on
/// a descriptor we own (paths, a fresh socket) and where every error is an
/// error. Calls on an owned descriptor go through `FileDescriptor.call`.
@inlinable
@discardableResult
public func systemCall<T: FixedWidthInteger & SignedInteger>(
    _ call: String,
    subject: @autoclosure () -> String? = nil,
    detail: @autoclosure () -> String? = nil,
    _ body: () -> T
) throws(SystemError) -> T {
    try SystemError.check(retryingEINTR(body), call, subject: subject(), detail: detail())
}
