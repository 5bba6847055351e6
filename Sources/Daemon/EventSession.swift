import Posix
import UnixIO
import Wire

/// One VMM connection on the event channel (docs/PROTOCOL.md §1.5).
final class EventSession {
    enum Phase: String {
        /// Connected; nothing but HELLO is accepted.
        case awaitingHello = "awaiting-hello"
        /// HELLO received; state is recorded, nothing is synced until READY.
        case loading
        /// READY received: every request takes effect at once.
        case ready
    }

    let connection: UnixConnection
    /// Frames with the descriptors that came with them, owned: whatever no
    /// request takes is closed when its frame, or the session, goes.
    var decoder = FrameDecoder<FileDescriptor>()
    var outbound = OutboundQueue()
    var phase = Phase.awaitingHello
    /// Set once the connection must close after its queued replies are sent.
    var closing = false
    /// Set when its first bytes arrive. A connection that closes before
    /// is a liveness probe (a second daemon checking the socket), not a
    /// VMM, and is not logged as one.
    var spoke = false
    /// The replies to the frames of one read, encoded here and sent with
    /// one sendmsg; kept (emptied, not freed) between reads so that a
    /// request stream allocates nothing for its replies.
    var replies: [UInt8] = []

    init(connection: UnixConnection) {
        self.connection = connection
        replies.reserveCapacity(4096)
    }
}

/// One client of the control socket.
final class ControlSession {
    let connection: UnixConnection
    var lines = LineDecoder()
    var outbound = OutboundQueue()
    var closing = false

    init(connection: UnixConnection) {
        self.connection = connection
    }
}
