import Glibc
import Posix

/// One connected Unix stream socket: bytes and descriptors in both
/// directions, and the peer's credentials.
///
/// The object owns the socket (a `FileDescriptor`); `close()` or
/// deallocation closes it exactly once. The primitive calls (`receive`,
/// `send`) make one system call each and report EAGAIN as a value, for a
/// poll loop; the blocking conveniences (`sendAll`, `receiveExactly`,
/// `receiveLine`) are for simple clients. Errors name the connection.
public final class UnixConnection: Sendable, CustomStringConvertible {
    public let descriptor: FileDescriptor
    /// The peer, read once when the connection was made (the kernel's
    /// record does not change afterwards).
    public let peer: PeerCredentials
    /// What this connection is, for error messages: the path it connected to,
    /// or the listener's path and the peer's pid.
    public let name: String

    /// The socket's number, for a poll set; -1 once closed.
    public var fd: Int32 { descriptor.number }

    /// Takes ownership of a connected Unix stream socket (accepted, from
    /// socketpair, or inherited) and reads its peer credentials. On failure
    /// the descriptor is closed (its owner goes).
    public convenience init(adopting descriptor: FileDescriptor, name: String) throws(SystemError) {
        let peer = try Self.named(name) { () throws(SystemError) in try PeerCredentials(socket: descriptor) }
        self.init(descriptor: descriptor, peer: peer, name: name)
    }

    init(descriptor: FileDescriptor, peer: PeerCredentials, name: String) {
        self.descriptor = descriptor
        self.peer = peer
        self.name = name
    }

    /// Connects to the stream socket at `path` (a file path, or an abstract
    /// name spelled "@name"). The connection is blocking; see
    /// `setNonBlocking(_:)`.
    public static func connect(path: String) throws(SystemError) -> UnixConnection {
        let socket = try FileDescriptor.unixSocket(.stream, subject: path)
        try named(path) { () throws(SystemError) in try socket.connect(unixAddress: path) }
        return try UnixConnection(adopting: socket, name: path)
    }

    /// A connected pair (socketpair(2)), both blocking. For tests, and for
    /// talking to a child process.
    public static func pair() throws(SystemError) -> (UnixConnection, UnixConnection) {
        let (first, second) = try FileDescriptor.unixSocketPair()
        return (try UnixConnection(adopting: first, name: first.subject),
                try UnixConnection(adopting: second, name: second.subject))
    }

    /// The peer's supplementary groups as the kernel recorded them at
    /// connect(2) (SO_PEERGROUPS, Linux 4.13+).
    public func peerGroups() throws(SystemError) -> [gid_t] {
        try named { () throws(SystemError) in try descriptor.peerGroups() }
    }

    /// Sets or clears O_NONBLOCK. Accepted connections start non-blocking,
    /// connected ones blocking.
    public func setNonBlocking(_ nonBlocking: Bool) throws(SystemError) {
        try named { () throws(SystemError) in try descriptor.setNonBlocking(nonBlocking) }
    }

    /// One recvmsg(2) into `buffer`. Descriptors that came with the bytes
    /// are owned by the result from the moment they arrive.
    ///
    /// Throws EMSGSIZE (call "recvmsg") when descriptors were lost on the
    /// way: more than SCM_MAX_FD (253) came with these bytes, or this process
    /// is out of descriptors. The bytes of that call are gone as well, so the
    /// stream cannot be resynchronised; close the connection.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> ReceiveResult {
        precondition(buffer.count > 0, "receive needs room for at least one byte (0 means end of stream)")
        guard let (count, fds) = try named({ () throws(SystemError) in try descriptor.receiveMessage(into: buffer) }) else {
            return .wouldBlock
        }
        if count == 0 { return .closed }
        return .data(count: count, fds: fds)
    }

    /// One sendmsg(2) of `bytes`, with `fds` attached to the first byte sent.
    ///
    /// The kernel takes its own references to the descriptors; the caller
    /// still owns `fds` and may close them once this returns `.sent`.
    /// A peer that is gone throws EPIPE or ECONNRESET (never SIGPIPE).
    public func send(_ bytes: UnsafeRawBufferPointer, fds: [FileDescriptor] = []) throws(SystemError) -> SendResult {
        // A zero-byte stream write carries nothing, so its descriptors would
        // be silently dropped.
        precondition(!bytes.isEmpty || fds.isEmpty, "descriptors must travel with at least one byte")
        guard let sent = try named({ () throws(SystemError) in try descriptor.sendMessage(bytes, fds: fds) }) else {
            return .wouldBlock
        }
        return .sent(sent)
    }

    /// `send` of several buffers in one sendmsg(2) (gather), for the
    /// outbound queue: many small replies leave in one call.
    func send(gathering buffers: UnsafeBufferPointer<iovec>, fds: [FileDescriptor]) throws(SystemError) -> SendResult {
        guard let sent = try named({ () throws(SystemError) in try descriptor.sendMessage(gathering: buffers, fds: fds) }) else {
            return .wouldBlock
        }
        return .sent(sent)
    }

    /// shutdown(2): ends one or both directions while keeping the socket.
    /// Shutting down writing is how a client says "no more requests" and
    /// still reads the replies; the peer then sees end of stream.
    public func shutdown(read: Bool = false, write: Bool = true) throws(SystemError) {
        try named { () throws(SystemError) in try descriptor.shutdown(reading: read, writing: write) }
    }

    /// Closes the socket; later calls do nothing but return EBADF.
    ///
    /// Not a throwing call because no caller can act on the failure: Linux
    /// releases a socket's descriptor even when close(2) reports an error.
    /// The error is returned for logging.
    @discardableResult
    public func close() -> SystemError? {
        do {
            try named { () throws(SystemError) in try descriptor.close() }
            return nil
        } catch {
            return error
        }
    }

    public var description: String {
        "UnixConnection(\(name), \(descriptor), peer \(peer))"
    }

    /// Runs `body`, naming this connection as the subject of its error.
    func named<T>(_ body: () throws(SystemError) -> T) throws(SystemError) -> T {
        try Self.named(name, body)
    }

    /// Runs `body`, naming `name` as the subject of its error: the
    /// descriptor knows the path it was made for, but not yet the peer.
    static func named<T>(_ name: String, _ body: () throws(SystemError) -> T) throws(SystemError) -> T {
        do {
            return try body()
        } catch {
            var error = error
            error.subject = name
            throw error
        }
    }
}
