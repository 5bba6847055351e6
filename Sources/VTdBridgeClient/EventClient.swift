import Glibc
import Posix
import UnixIO
import Wire

/// A blocking client of the event channel (docs/PROTOCOL.md §1): what a VMM's
/// VT-d emulation does, in Swift. Requests may be pipelined with `send` and
/// `receive`, or made one at a time with `request`.
public final class EventClient {
    public let path: String
    let connection: UnixConnection
    private var nextTag: UInt64 = 1
    /// Types of requests sent and not yet answered, in order.
    private var inFlight: [(type: UInt32, tag: UInt64)] = []
    private var head = 0

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(path: String) throws(Failure) {
        self.path = path
        do {
            connection = try UnixConnection.connect(path: path)
        } catch {
            throw Failure(description: "cannot connect to the event channel \(path): \(error)")
        }
    }

    public func close() { connection.close() }

    /// Sends one request without waiting for its reply.
    public func send(_ request: EventRequest, fds: [FileDescriptor] = []) throws(Failure) {
        let tag = nextTag
        nextTag += 1
        do {
            try connection.sendAll(EventCodec.encodeRequest(request, tag: tag), fds: fds)
        } catch {
            throw Failure(description: "sending \(request.type.name): \(error)")
        }
        inFlight.append((request.type.rawValue, tag))
    }

    /// How long `receive` polls for the reply without sleeping before it
    /// blocks; zero (the default) blocks at once. A VMM whose guest vCPU is
    /// spinning on an invalidation-wait descriptor anyway can spend that
    /// spin here and skip a wake-up (the daemon's `event-busy-poll-us` is the
    /// same trade on its side).
    public var spinBeforeBlocking: Duration = .zero
    private let spinPoller = Poller()

    private func spinUntilReadable() {
        guard spinBeforeBlocking > .zero else { return }
        let deadline = ContinuousClock.now + spinBeforeBlocking
        spinPoller.removeAll()
        spinPoller.register(connection.fd, readable: true, writable: false)
        while ContinuousClock.now < deadline {
            guard let ready = try? spinPoller.wait(timeoutMilliseconds: 0) else { return }
            if !ready.isEmpty { return }
        }
    }

    /// Receives the reply to the oldest request in flight.
    public func receive() throws(Failure) -> EventReply {
        spinUntilReadable()
        guard head < inFlight.count else { throw Failure(description: "no request in flight") }
        let (type, tag) = inFlight[head]
        head += 1
        if head > 1024 { inFlight.removeFirst(head); head = 0 }
        do {
            guard try fill(atLeast: FrameHeader.size) else {
                if inbox.count > inboxStart {
                    throw Failure(description: "the daemon closed the event channel mid-reply")
                }
                throw Failure(description: "the daemon closed the event channel (reply to \(EventType.describe(type)) missing)")
            }
            let header = FrameHeader.decode(inbox[inboxStart ..< inboxStart + FrameHeader.size])
            let total = FrameHeader.size + Int(header.length)
            guard try fill(atLeast: total) else {
                throw Failure(description: "the daemon closed the event channel mid-reply")
            }
            let payload = Array(inbox[(inboxStart + FrameHeader.size) ..< (inboxStart + total)])
            inboxStart += total
            if header.type == EventType.replyBit {
                // An unsolicited reply (e.g. another VMM is connected).
                let reply = try EventCodec.decodeReply(requestType: 0, payload: payload).get()
                throw Failure(description: "the daemon refused the connection: \(reply.status.name): \(reply.message)")
            }
            guard header.type == EventType.replyType(for: type), header.tag == tag else {
                throw Failure(description: "reply out of order: expected \(EventType.describe(type)) tag \(tag), got type 0x\(String(header.type, radix: 16)) tag \(header.tag)")
            }
            return try EventCodec.decodeReply(requestType: type, payload: payload).get()
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(description: "receiving the reply to \(EventType.describe(type)): \(error)")
        }
    }

    /// Bytes received and not yet returned in a reply, from `inboxStart`.
    /// A reply is read whole with one recvmsg when it fits in `chunk`
    /// (docs/PROTOCOL.md §1.2: a reader may take a whole frame in one read),
    /// instead of one for the header and one for the payload: under QEMU
    /// each call costs about a microsecond of its own (issue 14).
    private var inbox: [UInt8] = []
    private var inboxStart = 0
    private let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    deinit { chunk.deallocate() }

    /// Receives until at least `count` unread bytes are buffered; false at
    /// end of stream. One recvmsg takes whatever has arrived, up to the
    /// chunk: the rest of this reply and the start of the next, if sent.
    /// Descriptors (replies carry none) close when dropped.
    private func fill(atLeast count: Int) throws(SystemError) -> Bool {
        if inboxStart == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxStart = 0
        } else if inboxStart >= chunk.count {
            // A pipelining caller may always have the start of the next reply
            // buffered, so the inbox never empties: drop what was returned
            // before it grows without bound (one move per 64 KiB of replies).
            inbox.removeFirst(inboxStart)
            inboxStart = 0
        }
        while inbox.count - inboxStart < count {
            switch try connection.receive(into: chunk) {
            case let .data(received, _):
                inbox.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[..<received]))
            case .wouldBlock:
                try connection.waitUntilReadable()
            case .closed:
                return false
            }
        }
        return true
    }

    /// Sends one request and waits for its reply.
    public func request(_ request: EventRequest, fds: [FileDescriptor] = []) throws(Failure) -> EventReply {
        try send(request, fds: fds)
        return try receive()
    }

    /// `request`, failing unless the status is OK.
    @discardableResult
    public func require(_ request: EventRequest, fds: [FileDescriptor] = []) throws(Failure) -> EventReply {
        let reply = try self.request(request, fds: fds)
        guard reply.status == .ok else {
            throw Failure(description: "\(request.type.name) refused: \(reply.status.name): \(reply.message)")
        }
        return reply
    }
}
