import CPosix
import Glibc

/// Unix-domain sockets: creation, addresses, connections, messages with
/// descriptors (SCM_RIGHTS), and the peer's credentials.
///
/// Calls that can find nothing to do on a non-blocking socket (accept,
/// sendmsg, recvmsg, peek) return nil for EAGAIN instead of throwing: a poll
/// loop meets it on every round, and it is not a failure.
extension FileDescriptor {
    public enum SocketKind: Sendable {
        case stream, datagram
    }

    /// socket(AF_UNIX), close-on-exec, non-blocking if asked.
    public static func unixSocket(_ kind: SocketKind, nonBlocking: Bool = false, subject: String? = nil) throws(SystemError) -> FileDescriptor {
        var type = kind == .stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        type |= Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = try systemCall("socket", subject: subject) { cposix_socket(AF_UNIX, type) }
        return FileDescriptor(adopting: fd, subject: subject)
    }

    /// A connected pair of Unix stream sockets (socketpair(2)), blocking and
    /// close-on-exec.
    public static func unixSocketPair() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        try systemCall("socketpair") {
            cposix_socketpair(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), &fds)
        }
        return (FileDescriptor(adopting: fds[0], subject: "socketpair fd \(fds[0])"),
                FileDescriptor(adopting: fds[1], subject: "socketpair fd \(fds[1])"))
    }

    /// bind(2) to a Unix address: a path, or an abstract name spelled "@name".
    public func bind(unixAddress name: String) throws(SystemError) {
        try addressCall("bind", name) { cposix_bind_unix($0, name) }
    }

    /// connect(2) to a Unix address (a path or "@name"). Retrying after EINTR
    /// is safe for Unix sockets: a signal that ends the wait for room in the
    /// listener's backlog leaves the socket unconnected.
    public func connect(unixAddress name: String) throws(SystemError) {
        try addressCall("connect", name) { cposix_connect_unix($0, name) }
    }

    /// A call whose error is best named by the address it was given.
    @discardableResult
    private func addressCall<T: FixedWidthInteger & SignedInteger>(
        _ call: String, _ address: String, _ body: (Int32) -> T
    ) throws(SystemError) -> T {
        let result = try rawCall(call, body)
        return try SystemError.check(result, call, subject: address)
    }

    /// listen(2).
    public func listen(backlog: Int32) throws(SystemError) {
        try call("listen") { cposix_listen($0, backlog) }
    }

    /// accept4(2): the next connection, close-on-exec and non-blocking if
    /// asked; nil when none is waiting (EAGAIN) or the one waiting was reset
    /// before we got to it (ECONNABORTED).
    public func accept(nonBlocking: Bool) throws(SystemError) -> FileDescriptor? {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let result = try rawCall("accept") { cposix_accept($0, flags) }
        if result == -EAGAIN || result == -ECONNABORTED { return nil }
        if result < 0 { throw error("accept", errno: -result) }
        return FileDescriptor(adopting: result, subject: "connection accepted on \(subject)")
    }

    /// shutdown(2) of one or both directions; the descriptor stays open.
    public func shutdown(reading: Bool, writing: Bool) throws(SystemError) {
        let how: Int32
        switch (reading, writing) {
        case (true, true): how = Int32(SHUT_RDWR)
        case (true, false): how = Int32(SHUT_RD)
        case (false, true): how = Int32(SHUT_WR)
        case (false, false): return
        }
        try call("shutdown") { cposix_shutdown($0, how) }
    }

    /// Sets or clears O_NONBLOCK.
    public func setNonBlocking(_ nonBlocking: Bool) throws(SystemError) {
        try call("fcntl(F_SETFL)") { cposix_set_nonblocking($0, nonBlocking ? 1 : 0) }
    }

    /// One sendmsg(2) of the bytes in `buffers`, with `fds` attached to the
    /// first byte, never raising SIGPIPE (a gone peer is EPIPE). Returns the
    /// bytes sent, possibly fewer; nil if the socket is full (EAGAIN), in
    /// which case nothing was sent, descriptors included. The kernel takes
    /// its own references to `fds`: the caller may close them afterwards.
    public func sendMessage(gathering buffers: UnsafeBufferPointer<iovec>, fds: [FileDescriptor] = []) throws(SystemError) -> Int? {
        let result = try FileDescriptor.withRawValues(fds, "sendmsg") { (numbers) throws(SystemError) -> Int in
            try rawCall("sendmsg") {
                cposix_sendmsg_iov_fds($0, buffers.baseAddress, Int32(buffers.count), numbers.baseAddress, Int32(numbers.count))
            }
        }
        if result == -Int(EAGAIN) { return nil }
        if result < 0 { throw error("sendmsg", errno: Int32(-result)) }
        return result
    }

    /// `sendMessage(gathering:fds:)` of one buffer.
    public func sendMessage(_ bytes: UnsafeRawBufferPointer, fds: [FileDescriptor] = []) throws(SystemError) -> Int? {
        var buffer = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
        return try withUnsafePointer(to: &buffer) { (pointer) throws(SystemError) -> Int? in
            try sendMessage(gathering: UnsafeBufferPointer(start: pointer, count: 1), fds: fds)
        }
    }

    /// One recvmsg(2) into `buffer`, with room for SCM_MAX_FD (253)
    /// descriptors. Returns the bytes received (0 at end of stream) and the
    /// descriptors that came with them, owned from here on and close-on-exec
    /// (MSG_CMSG_CLOEXEC); nil when nothing is queued (EAGAIN).
    ///
    /// Throws EMSGSIZE when descriptors were lost on the way (the kernel set
    /// MSG_CTRUNC: more than 253 came, or this process has no numbers left);
    /// the bytes of that call are gone too, so the stream cannot be
    /// resynchronised and should be closed.
    public func receiveMessage(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> (count: Int, fds: [FileDescriptor])? {
        try withUnsafeTemporaryAllocation(of: Int32.self, capacity: Int(CPOSIX_MAX_FDS)) {
            (numbers) throws(SystemError) -> (count: Int, fds: [FileDescriptor])? in
            var received: Int32 = 0
            let result = try rawCall("recvmsg") {
                cposix_recvmsg_fds($0, buffer.baseAddress, buffer.count, numbers.baseAddress, CPOSIX_MAX_FDS, &received)
            }
            if result == -Int(EAGAIN) { return nil }
            if result == -Int(EMSGSIZE) {
                throw error("recvmsg", errno: EMSGSIZE, detail: "descriptors were discarded (more than \(CPOSIX_MAX_FDS) "
                    + "in one message, or none left in this process); the stream is lost")
            }
            if result < 0 { throw error("recvmsg", errno: Int32(-result)) }
            // Owned from the moment they exist here: whatever no one takes
            // is closed when its owner goes.
            let fds = numbers.prefix(Int(received)).map { FileDescriptor(adopting: $0) }
            return (result, fds)
        }
    }

    /// recv(2) with MSG_PEEK: copies up to `buffer.count` queued bytes without
    /// consuming them (0 at end of stream); nil when nothing is queued.
    /// Descriptors queued with those bytes are neither consumed nor installed.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        let result = try rawCall("recv(MSG_PEEK)") { cposix_recv_peek($0, buffer.baseAddress, buffer.count) }
        if result == -Int(EAGAIN) { return nil }
        if result < 0 { throw error("recv(MSG_PEEK)", errno: Int32(-result)) }
        return result
    }

    /// sendto(2) of one datagram to the Unix address `name`, without SIGPIPE.
    /// Returns the bytes sent (a datagram goes whole or not at all).
    public func sendDatagram(_ bytes: UnsafeRawBufferPointer, toUnixAddress name: String) throws(SystemError) -> Int {
        try addressCall("sendto", name) { cposix_sendto_unix($0, bytes.baseAddress, bytes.count, name) }
    }

    /// SO_PEERCRED: the peer's pid, uid and gid as the kernel recorded them
    /// at its connect(2) (or, seen from a client, the server's listen(2)).
    /// The path this Unix socket is bound to ("" if none or abstract) and
    /// whether it is listening: what a listener handed over by another
    /// process is checked against.
    public func listeningPath() throws(SystemError) -> (path: String, listening: Bool) {
        try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 110) { (buffer) throws(SystemError) -> (path: String, listening: Bool) in
            let result = try call("getsockname") { cposix_unix_listening_path($0, buffer.baseAddress!, buffer.count) }
            return (String(cString: buffer.baseAddress!), result == 1)
        }
    }

    public func peerCredentials() throws(SystemError) -> (pid: pid_t, uid: uid_t, gid: gid_t) {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        try call("getsockopt(SO_PEERCRED)") { cposix_peer_credentials($0, &pid, &uid, &gid) }
        return (pid, uid, gid)
    }

    /// SO_PEERGROUPS: the peer's supplementary groups, recorded with its
    /// credentials at connect(2). Unlike reading /proc/PID/status later, this
    /// cannot describe another process that reused the PID.
    public func peerGroups() throws(SystemError) -> [gid_t] {
        var capacity = 32
        while true {
            var groups = [gid_t](repeating: 0, count: capacity)
            var count: Int32 = 0
            // Result carries the typed error out of Array's untyped-rethrows closure.
            let result = try groups.withUnsafeMutableBufferPointer { buffer in
                Result { () throws(SystemError) -> Int32 in
                    try rawCall("getsockopt(SO_PEERGROUPS)") {
                        cposix_peer_groups($0, buffer.baseAddress, Int32(buffer.count), &count)
                    }
                }
            }.get()
            // NGROUPS_MAX is 65536; the kernel says how many there are.
            if result == -ERANGE, Int(count) > capacity, count <= 65536 {
                capacity = Int(count)
                continue
            }
            if result < 0 { throw error("getsockopt(SO_PEERGROUPS)", errno: -result) }
            return Array(groups.prefix(Int(count)))
        }
    }
}
