import Glibc

/// Calls `body` again for as long as it returns -EINTR, and returns its
/// first other result: a value >= 0 or -errno.
///
/// This is the only place in UnixIO that retries EINTR (the swift-system
/// policy: one helper, not a loop per call site). close(2) must never go
/// through it: Linux releases the descriptor even when close reports EINTR,
/// so a retry could close a descriptor another thread has just been given.
@inline(__always)
func retryingEINTR<T: FixedWidthInteger & SignedInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result != -T(EINTR) { return result }
    }
}

/// Turns a result-or--errno into the value, or a `SystemError` naming `call`.
@inline(__always)
@discardableResult
func check<T: FixedWidthInteger & SignedInteger>(
    _ result: T, _ call: String, _ detail: @autoclosure () -> String?
) throws(SystemError) -> T {
    if result >= 0 { return result }
    throw SystemError(call: call, errno: Int32(truncatingIfNeeded: -result), detail: detail())
}

/// `retryingEINTR` then `check`: for calls where every error is an error.
@inline(__always)
@discardableResult
func syscall<T: FixedWidthInteger & SignedInteger>(
    _ call: String, _ detail: @autoclosure () -> String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    try check(retryingEINTR(body), call, detail())
}

/// The socket type flags as the plain integers socket(2) and accept4(2) take
/// (Glibc imports them as an enum).
let socketStream = Int32(SOCK_STREAM.rawValue)
let socketDatagram = Int32(SOCK_DGRAM.rawValue)
let socketCloseOnExec = Int32(SOCK_CLOEXEC.rawValue)
let socketNonBlocking = Int32(SOCK_NONBLOCK.rawValue)
