/// Splits the event channel's byte stream into frames (PROTOCOL.md §1.2) and
/// gives each frame the file descriptors that arrived with it (§1.3).
///
/// Feed it what each `recvmsg` returned — the bytes and the `SCM_RIGHTS`
/// descriptors — with `append`, then call `next` until it returns nil.
///
/// Which frame a `recvmsg`'s descriptors belong to is `fdAssignment`'s
/// choice; see `FDAssignment` for why the default is the frame in which the
/// bytes *end* rather than §1.3's "start".
///
/// Hot path: frames are cut from one growing buffer by a read index; the
/// consumed prefix is dropped only when it is empty or at least half the
/// buffer, so each byte is moved at most a constant number of times.
///
/// After a header announces more than `maxPayload` bytes, `next` returns
/// `.failure` (status `TOO_LARGE`) once and nil from then on: the stream
/// cannot be resynchronised (§1.2). `rejectedHeader` then holds that header,
/// so the reply can carry its type and tag. Descriptors stay in
/// `pendingFDs` until the owner takes them.
///
/// Its methods are inlinable so that they are specialized for the
/// caller's descriptor type: run generically they looked up `[FD]` and
/// `FDBatch` metadata in the runtime on every frame (issue 14: 1.6K of 41K
/// instructions per one-page INVALIDATE).
///
/// Generic over what a descriptor is: the decoder only decides which frame
/// each one belongs to and moves it there, so Wire stays free of I/O. The
/// daemon decodes owned descriptors (Posix's `FileDescriptor`: whatever no
/// request takes is closed when its frame or the decoder goes); tests and
/// the fuzzer decode plain numbers, which nothing closes.
public struct FrameDecoder<FD> {
    /// A whole frame and the descriptors that came with it.
    public struct Frame {
        public var header: FrameHeader
        public var payload: [UInt8]
        public var fds: [FD]

        public init(header: FrameHeader, payload: [UInt8], fds: [FD] = []) {
            self.header = header
            self.payload = payload
            self.fds = fds
        }
    }

    /// Descriptors of one `recvmsg`, and the stream offset of the byte that
    /// decides their frame (see `FDAssignment`).
    @usableFromInline
    struct FDBatch {
        @usableFromInline var position: Int
        @usableFromInline var fds: [FD]

        @inlinable
        init(position: Int, fds: [FD]) {
            self.position = position
            self.fds = fds
        }
    }

    /// Largest payload accepted; the protocol's limit unless a test sets less.
    public let maxPayload: Int
    public let fdAssignment: FDAssignment

    @usableFromInline var buffer: [UInt8] = []
    /// Index in `buffer` of the first byte not yet handed out in a frame.
    @usableFromInline var readIndex = 0
    /// Stream offset of `buffer[0]`.
    @usableFromInline var bufferBase = 0
    @usableFromInline var fdBatches: [FDBatch] = []

    /// Whether an oversized header stopped the decoder.
    public var isPoisoned: Bool { poisoned }
    @usableFromInline var poisoned = false
    /// The header that announced too large a payload, once poisoned.
    public var rejectedHeader: FrameHeader? { rejected }
    @usableFromInline var rejected: FrameHeader?

    public init(maxPayload: Int = FrameHeader.maxPayload, fdAssignment: FDAssignment = .frameOfLastByte) {
        self.maxPayload = maxPayload
        self.fdAssignment = fdAssignment
    }

    /// Bytes received and not yet returned in a frame.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Descriptors received and not yet returned in a frame, oldest first.
    public var pendingFDs: [FD] { fdBatches.flatMap(\.fds) }

    /// Removes and returns every pending descriptor (on disconnect
    /// mid-frame, §1.2, or after `TOO_LARGE`).
    public mutating func takeAllFDs() -> [FD] {
        let fds = pendingFDs
        fdBatches.removeAll()
        return fds
    }

    /// Adds what one `recvmsg` returned. `fds` go to the frame that holds the
    /// last (or, per `fdAssignment`, the first) byte of `bytes`; with no bytes,
    /// to the frame that holds the next byte. Once poisoned, bytes are dropped
    /// and descriptors are kept only so that `takeAllFDs` returns them.
    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer, fds: [FD] = []) {
        if isPoisoned {
            if !fds.isEmpty { fdBatches.append(FDBatch(position: Int.max, fds: fds)) }
            return
        }
        compactIfWorthIt()
        if !fds.isEmpty {
            let first = bufferBase + buffer.count
            let position = fdAssignment == .frameOfLastByte ? first + max(0, bytes.count - 1) : first
            fdBatches.append(FDBatch(position: position, fds: fds))
        }
        buffer.append(contentsOf: bytes)
    }

    /// `append` for an array of bytes.
    public mutating func append(_ bytes: [UInt8], fds: [FD] = []) {
        bytes.withUnsafeBytes { append($0, fds: fds) }
    }

    /// The next whole frame; nil when more bytes are needed (or after the one
    /// `TOO_LARGE` failure).
    @inlinable
    public mutating func next() -> Result<Frame, WireError>? {
        if isPoisoned {
            return nil
        }
        guard buffer.count - readIndex >= FrameHeader.size else { return nil }
        let header = buffer.withUnsafeBytes { FrameHeader.decode($0, at: readIndex) }
        let length = Int(header.length)
        guard length <= maxPayload else {
            poisoned = true
            rejected = header
            let offset = bufferBase + readIndex
            buffer = []
            readIndex = 0
            return .failure(Self.tooLarge(header, at: offset, limit: maxPayload))
        }
        let total = FrameHeader.size + length
        guard buffer.count - readIndex >= total else { return nil }

        let payloadStart = readIndex + FrameHeader.size
        let payload = length == 0 ? [] : Array(buffer[payloadStart ..< payloadStart + length])
        var fds: [FD] = []
        if !fdBatches.isEmpty {
            // Batches whose deciding byte lies before this frame's end are its
            // own: earlier frames took theirs, and positions only grow.
            let frameEnd = bufferBase + readIndex + total
            var taken = 0
            while taken < fdBatches.count, fdBatches[taken].position < frameEnd {
                fds.append(contentsOf: fdBatches[taken].fds)
                taken += 1
            }
            fdBatches.removeFirst(taken)
        }
        readIndex += total
        return .success(Frame(header: header, payload: payload, fds: fds))
    }

    /// Drops the consumed prefix when that is cheap relative to the work
    /// already done: always when everything was consumed, else once the
    /// prefix is at least 4 KiB and half the buffer.
    @inlinable
    mutating func compactIfWorthIt() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            bufferBase += readIndex
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= 4096, readIndex * 2 >= buffer.count {
            bufferBase += readIndex
            buffer.removeSubrange(0 ..< readIndex)
            readIndex = 0
        }
    }
}

/// The TOO_LARGE failure, built out of line: only the poisoned path needs it.
extension FrameDecoder {
    @usableFromInline
    static func tooLarge(_ header: FrameHeader, at offset: Int, limit: Int) -> WireError {
        WireError(status: .tooLarge, message:
            "frame at stream offset \(offset) (\(EventType.describe(header.type)), tag \(header.tag)) announces a \(header.length)-byte payload, above the limit of \(limit) (PROTOCOL.md §1.2); the stream cannot be resynchronised and the connection is closed. Split large requests")
    }
}

extension FrameDecoder: Sendable where FD: Sendable {}
extension FrameDecoder.FDBatch: Sendable where FD: Sendable {}
extension FrameDecoder.Frame: Sendable where FD: Sendable {}
extension FrameDecoder.Frame: Equatable where FD: Equatable {}

/// Which frame receives the descriptors of one `recvmsg`.
///
/// Linux (`unix_stream_read_generic`) hands descriptors to the `recvmsg`
/// that reads the first byte of the `sendmsg` that carried them, may put
/// bytes of *earlier* `sendmsg`s in front of those in the same call, and
/// never reads past the end of the descriptor-carrying `sendmsg` in that
/// call. So when a VMM pipelines `HELLO` and `SET_MEM_TABLE`, one
/// `recvmsg` can return both frames with the table's descriptors: the
/// bytes start in `HELLO` and end in `SET_MEM_TABLE`.
public enum FDAssignment: Sendable, Equatable {
    /// The frame that holds the last byte of the `recvmsg`. Right whenever
    /// the descriptors travel in a `sendmsg` that carries bytes of their
    /// frame only (one `sendmsg` per frame, as vhost-user clients do),
    /// however the daemon's reads split or join the stream.
    case frameOfLastByte
    /// The frame that holds the first byte of the `recvmsg`: the literal
    /// wording of PROTOCOL.md §1.3. Right only when no read joins an
    /// earlier frame's bytes in front of the descriptor-carrying ones.
    case frameOfFirstByte
}
