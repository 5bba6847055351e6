import Glibc
import Posix

/// Blocking conveniences for simple clients (the CLI, the simulator, tests).
///
/// They work on blocking and non-blocking connections alike: on EAGAIN they
/// wait in poll(2) for the socket to become ready, with no timeout. A daemon
/// serving many clients uses `send`/`receive` with a `Poller` instead.
///
/// Descriptors received on the way are owned values: when a call fails
/// after receiving some, they are closed as the call's locals go.
extension UnixConnection {
    /// Sends every byte, waiting for room as needed. `fds` go with the first
    /// chunk only; the caller keeps ownership of them (the kernel sends
    /// duplicates).
    public func sendAll(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws(SystemError) {
        var offset = 0
        while offset < bytes.count || (offset == 0 && !fds.isEmpty) {
            let attached = offset == 0 ? fds : []
            let result = try bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) -> SendResult in
                    try send(UnsafeRawBufferPointer(rebasing: raw[offset...]), fds: attached)
                }
            }.get()
            switch result {
            case .sent(let count): offset += count
            case .wouldBlock: try waitUntilReady(events: Int16(POLLOUT))
            }
        }
    }

    /// Reads exactly `count` bytes, with every descriptor that came with them.
    ///
    /// Returns nil if the stream ended before the first byte (a clean end).
    /// Throws, with errno 0, if it ended after some but not all of them.
    public func receiveExactly(count: Int) throws(SystemError) -> (bytes: [UInt8], fds: [FileDescriptor])? {
        precondition(count > 0, "receiveExactly needs a positive count")
        var bytes = [UInt8](repeating: 0, count: count)
        var fds: [FileDescriptor] = []
        var filled = 0
        while filled < count {
            let result = try bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) -> ReceiveResult in
                    try receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
                }
            }.get()
            switch result {
            case .data(let received, let more):
                filled += received
                fds += more
            case .wouldBlock:
                try waitUntilReady(events: Int16(POLLIN))
            case .closed:
                if filled == 0 { return nil }
                throw SystemError(call: "recvmsg", errno: 0, subject: name,
                                  detail: "connection closed after \(filled) of \(count) bytes")
            }
        }
        return (bytes, fds)
    }

    /// Reads one line terminated by "\n" and returns it without the "\n",
    /// with every descriptor that came with its bytes.
    ///
    /// Never reads past the newline: it peeks (MSG_PEEK) to find it and then
    /// consumes exactly up to it, so the next line stays in the socket for
    /// the next call and no buffer has to live in the connection.
    ///
    /// Returns nil if the stream ended before the first byte. Throws, with
    /// errno 0, if it ended inside a line; throws EMSGSIZE if no newline came
    /// within `max` bytes (what was read is consumed: close the connection).
    public func receiveLine(max: Int = 65_536) throws(SystemError) -> (bytes: [UInt8], fds: [FileDescriptor])? {
        precondition(max >= 0, "receiveLine needs a non-negative max")
        var line: [UInt8] = []
        var fds: [FileDescriptor] = []
        let scratchSize = 4096
        var scratch = [UInt8](repeating: 0, count: scratchSize)
        while true {
            // Room left for the line and its newline.
            let room = max + 1 - line.count
            if room <= 0 {
                throw SystemError(call: "recvmsg", errno: EMSGSIZE, subject: name, detail: "no newline within \(max) bytes")
            }
            let peekLength = Swift.min(room, scratchSize)
            let peeked = try scratch.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) -> Int? in
                    try named { () throws(SystemError) in
                        try descriptor.peek(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<peekLength]))
                    }
                }
            }.get()
            guard let available = peeked else {
                try waitUntilReady(events: Int16(POLLIN))
                continue
            }
            if available == 0 {
                if line.isEmpty { return nil }
                throw SystemError(call: "recvmsg", errno: 0, subject: name,
                                  detail: "connection closed inside a line after \(line.count) bytes")
            }
            let newline = scratch[..<available].firstIndex(of: UInt8(ascii: "\n"))
            let take = newline.map { $0 + 1 } ?? available
            try consume(take, into: &scratch, fds: &fds)
            line += scratch[..<(newline ?? take)]
            if newline != nil { return (line, fds) }
        }
    }

    /// Reads exactly `count` bytes that a peek has shown are queued.
    private func consume(_ count: Int, into scratch: inout [UInt8], fds: inout [FileDescriptor]) throws(SystemError) {
        var filled = 0
        while filled < count {
            let result = try scratch.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) -> ReceiveResult in
                    try receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled..<count]))
                }
            }.get()
            switch result {
            case .data(let received, let more):
                filled += received
                fds += more
            case .wouldBlock:
                // Only if another reader took the bytes we peeked.
                try waitUntilReady(events: Int16(POLLIN))
            case .closed:
                throw SystemError(call: "recvmsg", errno: 0, subject: name, detail: "connection closed inside a line")
            }
        }
    }

    /// Waits in poll(2), without a timeout, until the socket is ready for
    /// `events` or has hung up or failed (the next call then reports why).
    /// Blocks until the connection has bytes to read (or has ended), for a
    /// caller that reads with `receive` on a non-blocking socket.
    public func waitUntilReadable() throws(SystemError) {
        try waitUntilReady(events: Int16(POLLIN))
    }

    private func waitUntilReady(events: Int16) throws(SystemError) {
        try named { () throws(SystemError) in _ = try descriptor.waitUntilReady(events: events) }
    }
}
