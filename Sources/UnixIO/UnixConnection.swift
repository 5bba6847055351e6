import CSocket
import Glibc

/// One connected Unix stream socket: bytes and descriptors in both
/// directions, and the peer's credentials.
///
/// The object owns the socket (see `Descriptor`); `close()` or deallocation
/// closes it exactly once. The primitive calls (`receive`, `send`) make one
/// system call each and report EAGAIN as a value, for a poll loop; the
/// blocking conveniences (`sendAll`, `receiveExactly`, `receiveLine`) are
/// for simple clients.
public final class UnixConnection: Sendable, CustomStringConvertible {
    public let descriptor: Descriptor
    /// The peer, read once when the connection was made (the kernel's
    /// record does not change afterwards).
    public let peer: PeerCredentials
    /// What this connection is, for error messages: the path it connected to,
    /// or the listener's path and the peer's pid.
    public let name: String

    /// The socket's number; -1 once closed.
    public var fd: Int32 { descriptor.rawValue }

    /// Takes ownership of a connected Unix stream socket (accepted, from
    /// socketpair, or inherited) and reads its peer credentials. On failure
    /// the descriptor is closed.
    public convenience init(adopting fd: Int32, name: String) throws(SystemError) {
        let descriptor = Descriptor(adopting: fd)
        let peer = try PeerCredentials(socket: fd, detail: name)
        self.init(descriptor: descriptor, peer: peer, name: name)
    }

    init(descriptor: Descriptor, peer: PeerCredentials, name: String) {
        self.descriptor = descriptor
        self.peer = peer
        self.name = name
    }

    /// Connects to the stream socket at `path` (a file path, or an abstract
    /// name spelled "@name"). The connection is blocking; see
    /// `setNonBlocking(_:)`.
    public static func connect(path: String) throws(SystemError) -> UnixConnection {
        let fd = try syscall("socket", path) { csocket_socket(AF_UNIX, socketStream | socketCloseOnExec) }
        let owner = Descriptor(adopting: fd)
        // Retrying an interrupted connect is safe for Unix sockets: the
        // kernel leaves the socket unconnected when a signal ends the wait
        // for room in the listener's backlog.
        try syscall("connect", path) { csocket_connect_unix(fd, path) }
        return try UnixConnection(adopting: owner.take(), name: path)
    }

    /// A connected pair (socketpair(2)), both blocking. For tests, and for
    /// talking to a child process.
    public static func pair() throws(SystemError) -> (UnixConnection, UnixConnection) {
        var fds: [Int32] = [-1, -1]
        try syscall("socketpair") { csocket_socketpair(socketStream | socketCloseOnExec, &fds) }
        let first = Descriptor(adopting: fds[0])
        let second = Descriptor(adopting: fds[1])
        return (try UnixConnection(adopting: first.take(), name: "socketpair fd \(fds[0])"),
                try UnixConnection(adopting: second.take(), name: "socketpair fd \(fds[1])"))
    }

    /// Sets or clears O_NONBLOCK. Accepted connections start non-blocking,
    /// connected ones blocking.
    public func setNonBlocking(_ nonBlocking: Bool) throws(SystemError) {
        try syscall("fcntl(F_SETFL)", name) { csocket_set_nonblocking(fd, nonBlocking ? 1 : 0) }
    }

    /// One recvmsg(2) into `buffer`, with room for up to 64 descriptors.
    ///
    /// Throws EMSGSIZE (call "recvmsg") when descriptors were lost on the
    /// way: more than SCM_MAX_FD (253) came with these bytes, or this process is out of
    /// descriptors. The bytes of that call are gone as well, so the stream
    /// cannot be resynchronised; close the connection.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> ReceiveResult {
        precondition(buffer.count > 0, "receive needs room for at least one byte (0 means end of stream)")
        return try withUnsafeTemporaryAllocation(of: Int32.self, capacity: Int(CSOCKET_MAX_FDS)) {
            (fds) throws(SystemError) -> ReceiveResult in
            var count: Int32 = 0
            let result = retryingEINTR {
                csocket_recvmsg_fds(fd, buffer.baseAddress, buffer.count, fds.baseAddress, CSOCKET_MAX_FDS, &count)
            }
            if result == -Int(EAGAIN) { return .wouldBlock }
            if result == -Int(EMSGSIZE) {
                throw SystemError(call: "recvmsg", errno: EMSGSIZE,
                                  detail: "\(name): descriptors were discarded (more than \(CSOCKET_MAX_FDS) "
                                      + "in one message, or none left in this process); the stream is lost")
            }
            let bytes = try check(result, "recvmsg", name)
            if bytes == 0 { return .closed }
            return .data(count: bytes, fds: Array(fds.prefix(Int(count))))
        }
    }

    /// One sendmsg(2) of `bytes`, with `fds` attached to the first byte sent.
    ///
    /// The kernel duplicates the descriptors into the message; the caller
    /// still owns its own and may close them once this returns `.sent`.
    /// A peer that is gone throws EPIPE or ECONNRESET (never SIGPIPE).
    public func send(_ bytes: UnsafeRawBufferPointer, fds: [Int32] = []) throws(SystemError) -> SendResult {
        // A zero-byte stream write carries nothing, so its descriptors would
        // be silently dropped.
        precondition(!bytes.isEmpty || fds.isEmpty, "descriptors must travel with at least one byte")
        let result = fds.withUnsafeBufferPointer { fdBuffer in
            retryingEINTR {
                csocket_sendmsg_fds(fd, bytes.baseAddress, bytes.count, fdBuffer.baseAddress, Int32(fdBuffer.count))
            }
        }
        if result == -Int(EAGAIN) { return .wouldBlock }
        return .sent(try check(result, "sendmsg", name))
    }

    /// `send` of several buffers in one sendmsg(2) (gather), for the
    /// outbound queue: many small replies leave in one call.
    func send(gathering buffers: UnsafeBufferPointer<iovec>, fds: [Int32]) throws(SystemError) -> SendResult {
        let result = fds.withUnsafeBufferPointer { fdBuffer in
            retryingEINTR {
                csocket_sendmsg_iov_fds(fd, buffers.baseAddress, Int32(buffers.count), fdBuffer.baseAddress, Int32(fdBuffer.count))
            }
        }
        if result == -Int(EAGAIN) { return .wouldBlock }
        return .sent(try check(result, "sendmsg", name))
    }

    /// shutdown(2): ends one or both directions while keeping the socket.
    /// Shutting down writing is how a client says "no more requests" and
    /// still reads the replies; the peer then sees end of stream.
    public func shutdown(read: Bool = false, write: Bool = true) throws(SystemError) {
        let how: Int32
        switch (read, write) {
        case (true, true): how = Int32(SHUT_RDWR)
        case (true, false): how = Int32(SHUT_RD)
        case (false, true): how = Int32(SHUT_WR)
        case (false, false): return
        }
        try syscall("shutdown", name) { csocket_shutdown(fd, how) }
    }

    /// Closes the socket; later calls do nothing but return EBADF.
    ///
    /// Not a throwing call because no caller can act on the failure: Linux
    /// releases a socket's descriptor even when close(2) reports an error.
    /// The error is returned for logging.
    @discardableResult
    public func close() -> SystemError? {
        do {
            try descriptor.close()
            return nil
        } catch {
            return SystemError(call: error.call, errno: error.errno, detail: name)
        }
    }

    public var description: String {
        "UnixConnection(\(name), \(descriptor), peer \(peer))"
    }
}
