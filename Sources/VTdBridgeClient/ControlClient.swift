import Glibc
import Posix
import UnixIO
import Wire

/// A blocking client of the control socket (docs/PROTOCOL.md §2): one
/// request, one reply line, with an optional descriptor (attach's device fd).
public final class ControlClient {
    public let path: String
    let connection: UnixConnection
    private var nextID: Int64 = 1

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `instance` is the daemon instance the caller meant (vtdbridged@NAME),
    /// named in the hint when nothing listens; nil when only a socket path
    /// was given, and the hint names that path instead.
    public init(path: String, instance: String? = nil) throws(Failure) {
        self.path = path
        do {
            connection = try UnixConnection.connect(path: path)
        } catch {
            var hint = ""
            if error.errno == ENOENT || error.errno == ECONNREFUSED {
                if let instance {
                    hint = "; is vtdbridged running? (systemctl status vtdbridged@\(instance))"
                } else {
                    hint = "; is vtdbridged running? (nothing listens on that path; a daemon's control socket is its --control-socket, config key control.socket)"
                }
            }
            if error.errno == EACCES { hint = "; the socket is 0660: join its group, or run as root" }
            throw Failure(description: "cannot connect to \(path): \(error)\(hint)")
        }
    }

    deinit { connection.close() }

    /// Sends a command; returns its result object, or the daemon's error.
    /// `fd` is the descriptor that came with the reply, if any (attach's
    /// device fd), owned: dropping it closes it.
    public func call(_ command: String, _ arguments: [String: JSONValue] = [:]) throws(Failure) -> (result: Result<JSONValue, ControlError>, fd: FileDescriptor?) {
        let id = nextID
        nextID += 1
        let line = ControlCodec.requestLine(command: command, arguments: arguments, id: .int(id))
        do {
            try connection.sendAll(Array(line.utf8), fds: [])
            // The first bytes alone tell an event-channel frame from a JSON
            // line (EventChannelReply), so they are read before the rest.
            guard let (head, headFDs) = try connection.receiveExactly(count: EventChannelReply.headBytes) else {
                throw Failure(description: "the daemon closed the connection without replying to \(command)")
            }
            if EventChannelReply.isFrame(head) {
                throw Failure(description: EventChannelReply.explanation(path: path))
            }
            guard let (rest, restFDs) = try connection.receiveLine(max: 1 << 30) else {
                throw Failure(description: "the daemon closed the connection inside its reply to \(command)")
            }
            let bytes = head + rest
            let fds = headFDs + restFDs
            let text = String(decoding: bytes, as: UTF8.self)
            switch ControlCodec.parseReply(text) {
            case let .failure(error):
                throw Failure(description: "unreadable reply to \(command): \(error.message)")
            case let .success(reply):
                // A reply carries at most one descriptor; any other is
                // closed as `fds` goes.
                return (reply.result, fds.first)
            }
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(description: "\(command): \(error)")
        }
    }

    /// `call`, with a daemon error turned into a thrown Failure.
    public func require(_ command: String, _ arguments: [String: JSONValue] = [:]) throws(Failure) -> JSONValue {
        let (result, _) = try call(command, arguments)
        switch result {
        case let .success(value): return value
        case let .failure(error): throw Failure(description: "\(command): \(error.code): \(error.message)")
        }
    }
}
