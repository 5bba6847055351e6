import Glibc
import Posix

/// Bytes (and descriptors) waiting to be written to a non-blocking
/// connection, in order.
///
/// Each enqueued chunk's descriptors go out with the first byte of that
/// chunk, as the protocol requires ("send them with the sendmsg that carries
/// any byte of that frame"). The queue holds each from `enqueue` on and
/// lets go once the kernel has taken its own reference, or when the chunk
/// is dropped unsent (`removeAll`, or the queue going away); a descriptor
/// closes when its last holder lets go, so one handed only to the queue is
/// closed right after it is sent. Copies of a queue share the descriptors.
///
/// `flush` gathers consecutive chunks into one sendmsg(2), up to the next
/// chunk that carries descriptors (those must start a call of their own to
/// travel with their chunk's first byte). Without that, each small reply
/// would take a socket-buffer entry of its own, and the per-entry overhead
/// fills the buffer after a few hundred replies.
///
/// `byteCount` lets the owner cap a slow reader: the daemon drops a client
/// whose queue grows past its limit instead of buffering without bound.
public struct OutboundQueue: Sendable {
    /// One enqueued chunk's bytes, in memory of their own so a flush can
    /// point the kernel at several chunks at once (an array's storage is
    /// only addressable inside its own closure).
    private final class Bytes: @unchecked Sendable {
        // Immutable after init; only read from then on.
        let storage: UnsafeMutableRawBufferPointer

        init(copying bytes: UnsafeRawBufferPointer) {
            storage = .allocate(byteCount: bytes.count, alignment: 1)
            storage.copyMemory(from: bytes)
        }

        convenience init(copying bytes: [UInt8]) {
            self.init(copying: bytes.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: $0.count) })
        }

        deinit { storage.deallocate() }
    }

    private struct Chunk: Sendable {
        var bytes: Bytes
        /// Bytes already sent.
        var offset: Int
        /// Sent with the first byte; emptied once the kernel has them.
        var fds: [FileDescriptor]

        var remaining: Int { bytes.storage.count - offset }
    }

    /// Most chunks one sendmsg gathers (well below IOV_MAX, 1024).
    private static let gatherLimit = 64

    /// Chunks before `head` are sent and released; they are dropped in bulk
    /// so that sending many small chunks does not shift the array each time.
    private var chunks: [Chunk] = []
    private var head = 0

    /// Bytes not yet sent.
    public private(set) var byteCount = 0

    public init() {}

    /// True when there is nothing left to send.
    public var isEmpty: Bool { head == chunks.count }

    /// Descriptors still waiting to be sent.
    public var fdCount: Int {
        chunks[head...].reduce(0) { $0 + $1.fds.count }
    }

    /// Appends `bytes` with descriptors to send along; the queue holds its
    /// references to them until the kernel has its own (the caller may drop
    /// or close its references; a closed one fails the send with EBADF).
    /// Descriptors need at least one byte to travel with.
    public mutating func enqueue(_ bytes: [UInt8], fds: [FileDescriptor] = []) {
        precondition(!bytes.isEmpty || fds.isEmpty, "descriptors must travel with at least one byte")
        guard !bytes.isEmpty else { return }
        chunks.append(Chunk(bytes: Bytes(copying: bytes), offset: 0, fds: fds))
        byteCount += bytes.count
    }

    /// Sends `bytes` (no descriptors) now when nothing is queued before
    /// them, and queues only what the kernel did not take; with a non-empty
    /// queue, they are queued behind it, so the order on the wire is the
    /// order of the calls. The common reply of a request-response stream so
    /// costs one sendmsg and no copy or allocation (issue 14); the caller's
    /// buffer may be reused as soon as this returns.
    public mutating func send(_ bytes: UnsafeRawBufferPointer, to connection: UnixConnection) throws(SystemError) {
        guard !bytes.isEmpty else { return }
        var taken = 0
        if isEmpty, case .sent(let sent) = try connection.send(bytes) { taken = sent }
        guard taken < bytes.count else { return }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[taken...])
        chunks.append(Chunk(bytes: Bytes(copying: rest), offset: 0, fds: []))
        byteCount += rest.count
    }

    /// Writes as much as the connection takes without blocking. Returns true
    /// when the queue is empty, false when the socket is full (wait for it to
    /// become writable and call again). Throws what `send` throws, e.g.
    /// EPIPE when the peer is gone; the queue is unchanged by a failed send.
    public mutating func flush(to connection: UnixConnection) throws(SystemError) -> Bool {
        while head < chunks.count {
            let result = try withUnsafeTemporaryAllocation(of: iovec.self, capacity: Self.gatherLimit) {
                (buffers) throws(SystemError) -> UnixConnection.SendResult in
                var count = 0
                var index = head
                while index < chunks.count, count < Self.gatherLimit, count == 0 || chunks[index].fds.isEmpty {
                    let chunk = chunks[index]
                    buffers[count] = iovec(iov_base: chunk.bytes.storage.baseAddress! + chunk.offset,
                                           iov_len: chunk.remaining)
                    count += 1
                    index += 1
                }
                // Chunks are only released below, after the call: the
                // pointers stay valid for its duration.
                let fds = chunks[head].offset == 0 ? chunks[head].fds : []
                return try connection.send(gathering: UnsafeBufferPointer(rebasing: buffers[..<count]), fds: fds)
            }
            guard case .sent(let sent) = result else { return false }
            // The kernel holds its own duplicates now; ours are closed here
            // (when no copy of the queue still holds them).
            chunks[head].fds = []
            advance(by: sent)
        }
        return true
    }

    /// Marks `count` bytes as sent, releasing the chunks they finish.
    private mutating func advance(by count: Int) {
        byteCount -= count
        var left = count
        while left > 0 {
            let taken = Swift.min(left, chunks[head].remaining)
            chunks[head].offset += taken
            left -= taken
            if chunks[head].remaining == 0 {
                chunks[head] = Chunk(bytes: Self.released, offset: 0, fds: [])
                head += 1
            }
        }
        compact()
    }

    /// Stands in for a sent chunk until compaction removes its slot.
    private static let released = Bytes(copying: [])

    /// Drops everything unsent and closes its descriptors.
    public mutating func removeAll() {
        chunks.removeAll()
        head = 0
        byteCount = 0
    }

    private mutating func compact() {
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
    }
}
