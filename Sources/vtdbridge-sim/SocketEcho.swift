import ArgumentParser
import Posix
import UnixIO

/// `vtdbridge-sim socket-echo` (hidden): the second process of the
/// benchmark's socket round trip. It connects to `--socket`, and for every
/// `--request-size` bytes it reads sends back the first `--reply-size` of
/// them, closing any descriptor that came along, until the stream ends. It
/// does no other work, so a round trip with it is what any two-process
/// request and reply over a Unix socket costs on that machine: the floor
/// under a vfio-user server's latency.
struct SocketEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "socket-echo",
        abstract: "Echo fixed-size messages on a Unix socket (the round-trip floor of make bench).",
        shouldDisplay: false)

    @Option(help: ArgumentHelp("The socket to connect to.", valueName: "PATH"))
    var socket: String

    @Option(name: .customLong("request-size"), help: "Bytes per request.")
    var requestSize = 48

    @Option(name: .customLong("reply-size"), help: "Bytes per reply (at most the request's).")
    var replySize = 16

    func validate() throws {
        guard requestSize > 0, replySize > 0, replySize <= requestSize else {
            throw ValidationError("--request-size and --reply-size must be positive, the reply no larger than the request")
        }
    }

    func run() throws {
        let connection = try UnixConnection.connect(path: socket)
        defer { connection.close() }
        while let (bytes, fds) = try connection.receiveExactly(count: requestSize) {
            for fd in fds { try? fd.close() }
            try connection.sendAll(Array(bytes[0..<replySize]))
        }
    }
}
