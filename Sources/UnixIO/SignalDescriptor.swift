import Glibc
import Posix

/// Signals as a readable descriptor (signalfd), so the event loop handles
/// SIGTERM or SIGHUP like any other input instead of inside a handler.
///
/// Creating one blocks its signals in the *calling thread only*. A signal
/// sent to the process (kill, systemd's SIGTERM) goes to any thread that
/// does not block it, where it runs its default action, typically ending
/// the process. So the daemon must create this on its main thread before
/// it starts any other thread: threads inherit the mask they are created
/// with. The descriptor is then read, on any thread, for signals pending for
/// the process or for the reading thread.
///
/// The signals stay blocked after `close()`: unblocking them would deliver
/// whatever is pending with its default action.
public final class SignalDescriptor: Sendable {
    /// The signals this descriptor reports.
    public let signals: [Int32]
    private let descriptor: FileDescriptor

    /// The descriptor to poll for readability; -1 once closed.
    public var fd: Int32 { descriptor.number }

    /// Blocks `signals` in the calling thread and opens a non-blocking,
    /// close-on-exec signalfd for them. EINVAL for an invalid signal number.
    public init(signals: [Int32]) throws(SystemError) {
        self.descriptor = try FileDescriptor.signalDescriptor(blocking: signals)
        self.signals = signals
    }

    /// Every signal pending now, in the order the kernel dequeues them; empty
    /// if none. Never blocks. Standard signals do not queue: one SIGTERM sent
    /// twice before a read is read once.
    public func read() throws(SystemError) -> [Int32] {
        var received: [Int32] = []
        while let signo = try descriptor.readSignal() {
            received.append(signo)
        }
        return received
    }

    /// Closes the descriptor (the signals stay blocked; see the type's notes).
    public func close() throws(SystemError) {
        try descriptor.close()
    }
}
