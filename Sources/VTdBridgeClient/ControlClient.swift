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

    public init(path: String) throws(Failure) {
        self.path = path
        do {
            connection = try UnixConnection.connect(path: path)
        } catch {
            var hint = ""
            if error.errno == ENOENT { hint = "; is vtdbridged running? (systemctl status vtdbridged@NAME)" }
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
            guard let (bytes, fds) = try connection.receiveLine(max: 1 << 30) else {
                throw Failure(description: "the daemon closed the connection without replying to \(command)")
            }
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
