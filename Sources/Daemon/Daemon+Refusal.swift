import Glibc
import UnixIO
import Wire

/// A control client that got one error line and is being let go.
final class RefusedClient {
    let connection: UnixConnection
    let deadline: ContinuousClock.Instant

    init(connection: UnixConnection, deadline: ContinuousClock.Instant) {
        self.connection = connection
        self.deadline = deadline
    }
}

extension Daemon {
    /// How long a refused control client is kept open to read its error line.
    static let refusalLinger = Duration.seconds(5)
    /// Most refused control clients kept open at once; beyond, the oldest is closed.
    static let maxRefused = 16

    /// Sends `error` as the only reply to a control client we will not
    /// serve (a refused peer, one client too many), then ends our side.
    ///
    /// Closing the socket right after the line would lose it whenever the
    /// client writes its request after our close(2): its write fails with
    /// EPIPE and a client like vtdbridgectl reports "Broken pipe", never
    /// the reason. So the line is sent, writing is shut down (the client
    /// reads the line, then end of stream), and the socket stays open until
    /// the client closes it or `refusalLinger` passes; what it sends
    /// meanwhile is read and discarded. At most `maxRefused` are kept.
    func refuseControl(_ connection: UnixConnection, _ error: ControlError) {
        let line = Array(ControlCodec.errorLine(id: nil, error: error).utf8)
        // One non-blocking send: the line is small and the socket new.
        _ = try? line.withUnsafeBytes { try connection.send($0, fds: []) }
        _ = try? connection.shutdown(write: true)
        if refusedControls.count >= Self.maxRefused,
           let oldest = refusedControls.min(by: { $0.value.deadline < $1.value.deadline }) {
            dropRefused(oldest.key)
        }
        let refused = RefusedClient(connection: connection, deadline: .now + Self.refusalLinger)
        refusedControls[connection.fd] = refused
        register(refused)
    }

    /// The refused client sent something or closed: discard its bytes; on
    /// end of stream or error, close.
    func serviceRefused(_ refused: RefusedClient) {
        let fd = refused.connection.fd
        guard refusedControls[fd] === refused else { return }
        var scratch = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<4 {
            let result = try? scratch.withUnsafeMutableBytes { try refused.connection.receive(into: $0) }
            switch result {
            case .data?:
                // Bytes and any descriptors are dropped (closed) unread.
                continue
            case .wouldBlock?:
                return
            case .closed?, nil:
                dropRefused(fd)
                return
            }
        }
    }

    func closeExpiredRefusals() {
        let now = ContinuousClock.now
        for (fd, refused) in refusedControls where refused.deadline <= now { dropRefused(fd) }
    }

    func dropRefused(_ fd: Int32) {
        guard let refused = refusedControls.removeValue(forKey: fd) else { return }
        unregister(refused)
        refused.connection.close()
    }
}
