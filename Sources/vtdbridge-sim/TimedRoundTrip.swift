import Posix
import UnixIO
import Wire

/// One request and its reply over a blocking Unix socket, timed from just
/// before the send to the last byte of the reply: the latency a vfio-user
/// client (QEMU) waits for. The vfio-user client and the socket round-trip
/// floor of `vfio-user-bench` both go through here, so both pay the same
/// client-side calls: one sendmsg, a recv for the 16-byte header, and one
/// more for a payload when the header announces one.
final class TimedRoundTrip {
    let connection: UnixConnection
    private var nextID: UInt16 = 0

    init(connection: UnixConnection) {
        self.connection = connection
    }

    /// Sends `bytes` with `fds`, reads a reply of `replySize` bytes; returns
    /// the reply and the time it took.
    func exchange(_ bytes: [UInt8], fds: [FileDescriptor] = [], replySize: Int) throws -> (reply: [UInt8], latency: Duration) {
        let start = ContinuousClock.now
        try connection.sendAll(bytes, fds: fds)
        guard let reply = try connection.receiveExactly(count: replySize) else {
            throw SimError("\(connection.name): the peer closed the connection instead of replying")
        }
        let latency = start.duration(to: .now)
        for fd in reply.fds { try? fd.close() }
        return (reply.bytes, latency)
    }

    /// A vfio-user command and its decoded reply. An error reply is thrown:
    /// a benchmark that timed refusals would time the wrong thing.
    func call(_ request: VFIOUserRequest, fds: [FileDescriptor] = []) throws -> (reply: VFIOUserReply, latency: Duration) {
        nextID &+= 1
        let bytes = VFIOUserCodec.encodeCommand(request, messageID: nextID)
        let start = ContinuousClock.now
        try connection.sendAll(bytes, fds: fds)
        guard let head = try connection.receiveExactly(count: VFIOUserHeader.size) else {
            throw SimError("\(connection.name): the server closed the connection instead of answering \(request.command.name)")
        }
        var message = head.bytes
        var received = head.fds
        let size = Int(VFIOUserHeader.decode(head.bytes).messageSize)
        if size > VFIOUserHeader.size {
            guard let rest = try connection.receiveExactly(count: size - VFIOUserHeader.size) else {
                throw SimError("\(connection.name): the server closed the connection inside its reply to \(request.command.name)")
            }
            message += rest.bytes
            received += rest.fds
        }
        let latency = start.duration(to: .now)
        for fd in received { try? fd.close() }
        let decoded = try VFIOUserCodec.decodeReply(message).get()
        guard decoded.header.messageID == nextID else {
            throw SimError("\(request.command.name) id \(nextID) was answered with id \(decoded.header.messageID)")
        }
        switch decoded.outcome {
        case let .success(reply): return (reply, latency)
        case let .error(errno): throw SimError("the server refused \(request.command.name) (id \(nextID)) with errno \(errno)")
        }
    }
}
