/// Splits a vfio-user byte stream into whole messages, each with the file
/// descriptors that came with it. The header's message size (which counts
/// the header) says where each message ends (vfio-user.rst, "Header").
///
/// Descriptors are given to the message that holds the last byte of the
/// `recvmsg` that brought them (`FDAssignment.frameOfLastByte`): QEMU sends
/// each message with one `sendmsg`, and Linux never lets one `recvmsg` read
/// past the end of a descriptor-carrying `sendmsg`.
///
/// A header announcing a size that cannot be framed (below 16 bytes, or
/// above the limits) poisons the stream: `next` returns that error once and
/// nil from then on, since nothing says where the next message would start.
/// Generic over what a descriptor is, as `FrameDecoder` is.
public struct VFIOUserStreamDecoder<FD> {
    public struct Message {
        public var header: VFIOUserHeader
        /// The whole message, header included, as the codec takes it.
        public var bytes: [UInt8]
        public var fds: [FD]
    }

    public let limits: VFIOUserLimits
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var bufferBase = 0
    private var fdBatches: [(position: Int, fds: [FD])] = []
    public private(set) var isPoisoned = false
    private var failureDelivered = false

    public init(limits: VFIOUserLimits = VFIOUserLimits()) {
        self.limits = limits
    }

    /// Bytes received and not yet returned in a message.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Removes and returns every descriptor not yet given to a message.
    public mutating func takeAllFDs() -> [FD] {
        let fds = fdBatches.flatMap(\.fds)
        fdBatches.removeAll()
        return fds
    }

    /// Adds what one `recvmsg` returned.
    public mutating func append(_ bytes: UnsafeRawBufferPointer, fds: [FD] = []) {
        if isPoisoned {
            if !fds.isEmpty { fdBatches.append((Int.max, fds)) }
            return
        }
        if readIndex > 0, readIndex == buffer.count || (readIndex >= 4096 && readIndex * 2 >= buffer.count) {
            bufferBase += readIndex
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        if !fds.isEmpty {
            fdBatches.append((bufferBase + buffer.count + max(0, bytes.count - 1), fds))
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8], fds: [FD] = []) {
        bytes.withUnsafeBytes { append($0, fds: fds) }
    }

    /// The next whole message; nil when more bytes are needed.
    public mutating func next() -> Result<Message, VFIOUserWireError>? {
        guard !isPoisoned else { return nil }
        guard buffer.count - readIndex >= VFIOUserHeader.size else { return nil }
        let header = VFIOUserHeader.decode(buffer[readIndex ..< readIndex + VFIOUserHeader.size])
        if let error = VFIOUserCodec.checkAnnouncedSize(header, limits: limits) {
            isPoisoned = true
            buffer = []
            readIndex = 0
            return .failure(VFIOUserWireError(error.reason, error.message + "; the stream cannot be resynchronised and the connection is closed", header: header))
        }
        let size = Int(header.messageSize)
        guard buffer.count - readIndex >= size else { return nil }
        let bytes = Array(buffer[readIndex ..< readIndex + size])
        var fds: [FD] = []
        let end = bufferBase + readIndex + size
        var taken = 0
        while taken < fdBatches.count, fdBatches[taken].position < end {
            fds.append(contentsOf: fdBatches[taken].fds)
            taken += 1
        }
        fdBatches.removeFirst(taken)
        readIndex += size
        return .success(Message(header: header, bytes: bytes, fds: fds))
    }
}

extension VFIOUserStreamDecoder: Sendable where FD: Sendable {}
extension VFIOUserStreamDecoder.Message: Sendable where FD: Sendable {}
