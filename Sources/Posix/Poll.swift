import CPosix
import Glibc

/// poll(2) over raw entries (the poll set of an event loop).
public enum Poll {
    /// Waits until an entry is ready or the timeout passes; returns how many
    /// entries have events (0 on timeout). EINTR restarts the wait with the
    /// timeout `timeout()` gives then, so that a signal does not extend it.
    ///
    /// The entries hold raw numbers; their owners must keep them open while
    /// they are registered (a closed number reports POLLNVAL, a reused one
    /// someone else's readiness).
    public static func wait(_ entries: UnsafeMutableBufferPointer<pollfd>, timeout: () -> Int32) throws(SystemError) -> Int {
        let ready = retryingEINTR { cposix_poll(entries.baseAddress, UInt(entries.count), timeout()) }
        return Int(try SystemError.check(ready, "poll", detail: "\(entries.count) descriptors"))
    }
}

extension FileDescriptor {
    /// Waits in poll(2), without a timeout, until this descriptor is ready
    /// for `events` (POLLIN, POLLOUT) or has hung up or failed; returns the
    /// events that occurred.
    @discardableResult
    public func waitUntilReady(events: Int16) throws(SystemError) -> Int16 {
        var entry = pollfd(fd: -1, events: events, revents: 0)
        try call("poll") { fd -> Int32 in
            entry.fd = fd
            return cposix_poll(&entry, 1, -1)
        }
        return entry.revents
    }
}
