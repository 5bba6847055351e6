import Posix

extension UnixConnection {
    /// The outcome of one non-blocking `receive`.
    public enum ReceiveResult: Sendable, Equatable {
        /// `count` bytes arrived, with the descriptors that came with them,
        /// owned (close-on-exec); whatever no one takes is closed when the
        /// last reference to it goes.
        case data(count: Int, fds: [FileDescriptor])
        /// Nothing to read now (EAGAIN on a non-blocking connection).
        case wouldBlock
        /// The peer closed its end (or shut down writing): end of stream.
        case closed
    }

    /// The outcome of one non-blocking `send`.
    public enum SendResult: Sendable, Equatable {
        /// This many bytes were queued in the kernel, possibly fewer than
        /// asked. Descriptors, if any, went with the first of them.
        case sent(Int)
        /// The socket buffer is full (EAGAIN); nothing was sent, descriptors
        /// included.
        case wouldBlock
    }
}
