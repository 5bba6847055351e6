import UnixIO

/// One descriptor the daemon's poll loop watches, and what to do when poll
/// reports it: a listener, a session, the signalfd. The loop knows no kind
/// of socket by name; it asks each registered client what it waits for and
/// hands the event back to it. A new kind of socket is a new conforming
/// type, registered with `Daemon.register` when it opens and unregistered
/// before it closes (poll reports a closed number as POLLNVAL, and a reused
/// one as someone else's readiness).
protocol PollClient: AnyObject {
    /// The descriptor to poll; fixed for the client's life.
    var pollDescriptor: Int32 { get }
    /// What to wait for in this round. Hang-ups and errors are always reported.
    var interest: PollInterest { get }
    /// Poll reported `event` for `pollDescriptor`.
    func service(_ event: Poller.Event, daemon: Daemon)
}

struct PollInterest: Equatable {
    var readable: Bool
    var writable: Bool
    static let read = PollInterest(readable: true, writable: false)
}

/// A listening socket: every readiness means connections to accept.
final class ListenerClient: PollClient {
    let listener: UnixListener
    private let accept: (Daemon) -> Void

    init(_ listener: UnixListener, accept: @escaping (Daemon) -> Void) {
        self.listener = listener
        self.accept = accept
    }

    var pollDescriptor: Int32 { listener.fd }
    var interest: PollInterest { .read }
    func service(_ event: Poller.Event, daemon: Daemon) { accept(daemon) }
}

/// The signalfd through which SIGTERM and SIGINT arrive.
final class SignalClient: PollClient {
    let signals: SignalDescriptor
    init(_ signals: SignalDescriptor) { self.signals = signals }
    var pollDescriptor: Int32 { signals.fd }
    var interest: PollInterest { .read }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.handleSignals(signals) }
}

extension EventSession: PollClient {
    var pollDescriptor: Int32 { connection.fd }
    var interest: PollInterest {
        // Not read past readPauseBytes of unsent replies: a VMM that reads
        // none blocks itself (PROTOCOL.md §1.1).
        PollInterest(readable: !closing && outbound.byteCount < Daemon.readPauseBytes, writable: !outbound.isEmpty)
    }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.serviceVMM(self, event) }
}

extension ControlSession: PollClient {
    var pollDescriptor: Int32 { connection.fd }
    var interest: PollInterest {
        PollInterest(readable: !closing && outbound.byteCount < Daemon.readPauseBytes, writable: !outbound.isEmpty)
    }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.serviceControl(self, event) }
}

extension RefusedClient: PollClient {
    var pollDescriptor: Int32 { connection.fd }
    var interest: PollInterest { .read }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.serviceRefused(self) }
}
