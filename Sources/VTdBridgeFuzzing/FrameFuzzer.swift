import VTdGuest
import Wire

/// Fuzz target 1: the event channel's framing and request codec
/// (`FrameDecoder`, `EventCodec.decodeRequest`, and the reply codec).
///
/// Input: one configuration byte, one chunking byte, then the byte stream a
/// VMM sent. The stream is fed to a `FrameDecoder` in the chunks a socket
/// might return, with made-up descriptor numbers riding on some reads, and
/// every frame is decoded. Invariants:
///
/// - framing does not depend on chunking: the frames, their descriptors, the
///   one `TOO_LARGE` failure and what is left buffered are exactly what a
///   plain reference parser of the whole stream says;
/// - no descriptor is lost or duplicated: frames' descriptors plus
///   `pendingFDs` are every descriptor appended, in order, and
///   `takeAllFDs` empties the decoder;
/// - a request that decodes re-encodes (`encodeRequest` with its tag) to
///   exactly the frame's bytes, and carries as many descriptors as it says;
/// - a request that fails has a failure status and a message, and the error
///   reply built for it decodes back to that status and message;
/// - any payload that decodes as a reply re-encodes to the same bytes.
public enum FrameFuzzer {
    public static func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        do {
            try runChecked(data)
            return .ok
        } catch {
            return .failed(error.message)
        }
    }

    /// First descriptor number handed out; never a real descriptor (nothing
    /// here closes them).
    static let firstFakeFD: Int32 = 1_000_000

    struct ReferenceFrame: Equatable {
        var header: FrameHeader
        var payload: ArraySlice<UInt8>
        var fds: [Int32]
    }

    static func runChecked(_ data: UnsafeRawBufferPointer) throws(Violation) {
        var input = FuzzReader(data)
        let config = input.u8(or: 0)
        let chunkSelector = input.u8(or: 0)
        // Bits 0-1: a small payload limit (00) or the protocol's; bit 2: which
        // frame gets a read's descriptors; bits 3-4: how often reads carry them.
        let maxPayload = config & 3 == 0 ? Int(config >> 5) * 24 : FrameHeader.maxPayload
        let assignment: FDAssignment = config & 4 == 0 ? .frameOfLastByte : .frameOfFirstByte
        let fdEvery = Int((config >> 3) & 3)
        let stream = Array(input.rest())

        var decoder = FrameDecoder<Int32>(maxPayload: maxPayload, fdAssignment: assignment)
        var chunker = Chunker(selector: chunkSelector)
        var rng = SplitMix64(seed: UInt64(config) << 8 | UInt64(chunkSelector))
        var frames: [FrameDecoder<Int32>.Frame] = []
        var failures: [WireError] = []
        // The reference: descriptor batches with the stream offset that decides their frame.
        var batches: [(position: Int, fds: [Int32])] = []
        var allFDs: [Int32] = []
        var nextFD = firstFakeFD
        var offset = 0
        var reads = 0

        func drain() {
            while let result = decoder.next() {
                switch result {
                case let .success(frame): frames.append(frame)
                case let .failure(error): failures.append(error)
                }
            }
        }

        while offset < stream.count {
            let size = chunker.next(remaining: stream.count - offset)
            reads += 1
            var fds: [Int32] = []
            // fdEvery 1, 2, 3: every read, every 2nd, every 4th (and every
            // empty read) carries one descriptor, sometimes two or three.
            if fdEvery != 0, reads % (1 << (fdEvery - 1)) == 0 || size == 0 {
                for _ in 0 ... (rng.below(4) == 0 ? rng.below(3) : 0) {
                    fds.append(nextFD)
                    nextFD += 1
                }
            }
            if size == 0 && fds.isEmpty { continue }
            let position = assignment == .frameOfLastByte ? offset + max(0, size - 1) : offset
            if !fds.isEmpty {
                batches.append((position, fds))
                allFDs += fds
            }
            stream[offset ..< offset + size].withUnsafeBytes { decoder.append($0, fds: fds) }
            offset += size
            drain()
        }
        drain()

        // The reference parse of the whole stream.
        var expected: [ReferenceFrame] = []
        var at = 0
        var rejected: (header: FrameHeader, offset: Int)?
        var taken = 0
        while stream.count - at >= FrameHeader.size {
            let header = FrameHeader.decode(stream[at ..< at + FrameHeader.size])
            if Int(header.length) > maxPayload {
                rejected = (header, at)
                break
            }
            let end = at + FrameHeader.size + Int(header.length)
            guard end <= stream.count else { break }
            var fds: [Int32] = []
            while taken < batches.count, batches[taken].position < end {
                fds += batches[taken].fds
                taken += 1
            }
            expected.append(ReferenceFrame(header: header, payload: stream[at + FrameHeader.size ..< end], fds: fds))
            at = end
        }
        let expectedPending = batches[taken...].flatMap(\.fds)

        try check(frames.count == expected.count,
                  "\(frames.count) frames decoded, the reference parse finds \(expected.count) (chunking \(chunkSelector & 7), \(stream.count) bytes)")
        for (i, (got, want)) in zip(frames, expected).enumerated() {
            try check(got.header == want.header, "frame \(i): header \(got.header), reference \(want.header)")
            try check(got.payload.elementsEqual(want.payload), "frame \(i): payload differs from the stream's bytes")
            try check(got.fds == want.fds, "frame \(i): descriptors \(got.fds), reference \(want.fds) (\(assignment))")
        }
        if let rejected {
            try check(failures.count == 1, "an oversized header at offset \(rejected.offset) gave \(failures.count) failures, not 1")
            try check(failures[0].status == .tooLarge, "oversized header reported as \(failures[0].status)")
            try check(decoder.isPoisoned, "oversized header did not poison the decoder")
            try check(decoder.rejectedHeader == rejected.header, "rejectedHeader \(String(describing: decoder.rejectedHeader)), reference \(rejected.header)")
            try check(decoder.bufferedByteCount == 0, "a poisoned decoder still buffers \(decoder.bufferedByteCount) bytes")
        } else {
            try check(failures.isEmpty, "failures \(failures) without an oversized header")
            try check(!decoder.isPoisoned, "decoder poisoned without an oversized header")
            try check(decoder.bufferedByteCount == stream.count - at,
                      "decoder buffers \(decoder.bufferedByteCount) bytes; \(stream.count - at) are left after the last whole frame")
        }
        try check(decoder.next() == nil, "next() returned something after the stream was drained")
        try check(decoder.pendingFDs == expectedPending, "pending descriptors \(decoder.pendingFDs), reference \(expectedPending)")
        try check(frames.flatMap(\.fds) + decoder.pendingFDs == allFDs, "descriptors lost or duplicated")
        let closed = decoder.takeAllFDs()
        try check(closed == expectedPending && decoder.pendingFDs.isEmpty, "takeAllFDs returned \(closed), left \(decoder.pendingFDs)")

        for (i, frame) in frames.enumerated() {
            try checkRequest(frame, index: i)
            try checkReply(frame, index: i)
        }
    }

    /// Decodes one frame as a request and checks what follows from the result.
    static func checkRequest(_ frame: FrameDecoder<Int32>.Frame, index i: Int) throws(Violation) {
        let header = frame.header
        let result = try withExactCopy(frame.payload) { payload throws(Violation) in
            EventCodec.decodeRequest(type: header.type, payload: payload, fdCount: frame.fds.count)
        }
        switch result {
        case let .success(request):
            try check(request.type.rawValue == header.type, "frame \(i): type \(header.type) decoded as \(request.type)")
            try check(request.expectedFDCount == frame.fds.count,
                      "frame \(i): \(request.type) accepted with \(frame.fds.count) descriptors, expects \(request.expectedFDCount)")
            var original: [UInt8] = []
            header.encode(into: &original)
            original += frame.payload
            let encoded = EventCodec.encodeRequest(request, tag: header.tag)
            try check(encoded == original,
                      "frame \(i): \(request.type) re-encodes to \(hexBytes(encoded)), the frame was \(hexBytes(original))")
            let again = EventCodec.decodeRequest(type: header.type, payload: Array(encoded.dropFirst(FrameHeader.size)), fdCount: frame.fds.count)
            try check(again == .success(request), "frame \(i): the re-encoded \(request.type) decodes to \(again)")
        case let .failure(error):
            try check(error.status != .ok && error.status != .partial, "frame \(i): refused with status \(error.status)")
            try check(!error.message.isEmpty, "frame \(i): refused with an empty message")
            let reply = EventCodec.encodeReply(requestType: header.type, tag: header.tag, error: error)
            try check(reply.count >= FrameHeader.size, "frame \(i): error reply shorter than a header")
            let replyHeader = FrameHeader.decode(reply[0 ..< FrameHeader.size])
            try check(replyHeader.type == header.type | EventType.replyBit && replyHeader.tag == header.tag
                      && Int(replyHeader.length) == reply.count - FrameHeader.size,
                      "frame \(i): error reply header \(replyHeader) for request header \(header)")
            let decoded = try withExactCopy(reply.dropFirst(FrameHeader.size)) { payload throws(Violation) in
                EventCodec.decodeReply(requestType: header.type, payload: payload)
            }
            guard case let .success(back) = decoded else {
                throw Violation("frame \(i): the error reply for \(error.status) does not decode: \(decoded)")
            }
            let message = Array(error.message.utf8)
            try check(back.status == error.status, "frame \(i): error reply status \(back.status), sent \(error.status)")
            try check(Array(back.message.utf8).count <= EventLimits.maxMessageBytes
                      && message.starts(with: back.message.utf8)
                      && (message.count <= EventLimits.maxMessageBytes) == (back.message.utf8.count == message.count),
                      "frame \(i): error reply message is not the message cut to \(EventLimits.maxMessageBytes) bytes")
        }
    }

    /// Decodes the payload as a reply to the frame's type (the client side):
    /// whatever decodes must re-encode to the same payload.
    static func checkReply(_ frame: FrameDecoder<Int32>.Frame, index i: Int) throws(Violation) {
        let requestType = frame.header.type & ~EventType.replyBit
        let decoded = try withExactCopy(frame.payload) { payload throws(Violation) in
            EventCodec.decodeReply(requestType: requestType, payload: payload)
        }
        guard case let .success(reply) = decoded else { return }
        let encoded = EventCodec.encodeReply(requestType: requestType, tag: frame.header.tag, reply)
        try check(encoded.dropFirst(FrameHeader.size).elementsEqual(frame.payload),
                  "frame \(i): reply \(reply) re-encodes to \(hexBytes(encoded.dropFirst(FrameHeader.size))), received \(hexBytes(frame.payload))")
    }
}
