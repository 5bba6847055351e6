import VTd
import VTdGuest
import Wire

/// Fuzz target 4: the vfio-user stream decoder and codec
/// (`VFIOUserStreamDecoder`; `VFIOUserCodec`: `checkAnnouncedSize`,
/// `decodeCommand`, `decodeReply`, the encoders and the error reply), as the
/// daemon's vfio-user server drives them.
///
/// Input: one configuration byte (the limits), one chunking byte, then the
/// bytes a vfio-user client sent. The stream is fed to a
/// `VFIOUserStreamDecoder` in the pieces a socket's reads might return, with
/// made-up descriptor numbers riding on some reads; every message it returns
/// goes to `decodeCommand` (and, for the client side, to `decodeReply`) from
/// an allocation of exactly its size, so that AddressSanitizer sees a read
/// past it. Invariants:
///
/// - framing does not depend on chunking: the messages, their descriptors,
///   the one refusal of a size that cannot be framed (after which nothing
///   more comes out) and the bytes left buffered are what a plain reference
///   parse of the whole stream gives; no descriptor is lost or duplicated
///   (messages' descriptors plus `takeAllFDs` are every one appended, in
///   order);
/// - the size check agrees with the limits (`16 ... maxMessageSize`), and
///   `decodeCommand` refuses such a header with the same error;
/// - a refusal has a non-empty message and the header of the message it
///   refused; its error reply (`encodeErrorReply(for:)`) exists exactly when
///   the command asked for a reply, is 16 bytes with the error flag, the
///   refused message's ID and command and a non-zero errno, and decodes as a
///   reply with that errno when the command is one the codec knows;
/// - what decodes as a command obeys its layout and the limits (the payload
///   length, `argsz`, one data type and one action in SET_IRQS, a REGION_READ
///   or REGION_WRITE count within `maxDataTransfer` and equal to the data
///   carried, VERSION data within `maxVersionData`), and re-encodes
///   (`encodeCommand`) to bytes that decode to the same request: the same
///   bytes for every fixed layout (the header's reserved error field aside),
///   a fixed point of decode-then-encode for VERSION, whose JSON text is the
///   peer's;
/// - a fixed-layout command is accepted exactly when a reference check written
///   from vfio-user.rst's tables accepts it;
/// - what decodes as a reply re-encodes (`encodeReply`) the same way, and no
///   bytes decode both as a command and as a reply;
/// - the codec's framing is exact: a message with one byte more is refused
///   as trailing bytes, with one byte less (or anything under 16 bytes left
///   at the end of the stream) as truncated.
public enum VFIOUserFuzzer {
    public static func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        do {
            try runChecked(data)
            return .ok
        } catch {
            return .failed(error.message)
        }
    }

    /// The limits a configuration byte selects: bits 0-1 clear give small
    /// limits (a transfer of 8 × bits 2-7 bytes, VERSION data of 16 × bits
    /// 2-7), so that inputs of a few hundred bytes reach every size refusal;
    /// anything else gives the defaults, which are what the server offers.
    static func limits(_ config: UInt8) -> VFIOUserLimits {
        guard config & 3 == 0 else { return VFIOUserLimits() }
        return VFIOUserLimits(maxDataTransfer: Int(config >> 2) * 8, maxVersionData: Int(config >> 2) * 16)
    }

    /// First descriptor number handed out; never a real descriptor (nothing
    /// here closes them).
    static let firstFakeFD: Int32 = 1_000_000

    /// A message of the reference parse: where it lies in the stream.
    struct ReferenceMessage {
        var header: VFIOUserHeader
        var range: Range<Int>
        var fds: [Int32]
    }

    static func runChecked(_ data: UnsafeRawBufferPointer) throws(Violation) {
        var input = FuzzReader(data)
        let limits = limits(input.u8(or: 1))
        // Chunking byte: bits 0-2 the read sizes (`Chunker`), bits 3-4 how
        // often a read carries descriptors (never, every read, every 2nd, every 4th).
        let chunkSelector = input.u8(or: 0)
        let fdEvery = Int((chunkSelector >> 3) & 3)
        let stream = Array(input.rest())

        // What the server does: append each read, take every message out.
        var decoder = VFIOUserStreamDecoder<Int32>(limits: limits)
        var chunker = Chunker(selector: chunkSelector)
        var rng = SplitMix64(seed: UInt64(chunkSelector) | 0x5646_494f_0000)
        var results: [Result<VFIOUserStreamDecoder<Int32>.Message, VFIOUserWireError>] = []
        var batches: [(position: Int, fds: [Int32])] = []
        var allFDs: [Int32] = []
        var nextFD = firstFakeFD
        var offset = 0
        var reads = 0
        while offset < stream.count {
            let size = chunker.next(remaining: stream.count - offset)
            reads += 1
            var fds: [Int32] = []
            if fdEvery != 0, reads % (1 << (fdEvery - 1)) == 0 || size == 0 {
                for _ in 0 ... (rng.below(4) == 0 ? rng.below(3) : 0) {
                    fds.append(nextFD)
                    nextFD += 1
                }
            }
            if size == 0 && fds.isEmpty { continue }
            // Linux hands a read's descriptors over with its bytes; the
            // decoder gives them to the message holding the read's last byte.
            if !fds.isEmpty {
                batches.append((offset + max(0, size - 1), fds))
                allFDs += fds
            }
            stream[offset ..< offset + size].withUnsafeBytes { decoder.append($0, fds: fds) }
            offset += size
            while let result = decoder.next() { results.append(result) }
        }

        // The reference parse of the whole stream.
        var expected: [ReferenceMessage] = []
        var refusal: (header: VFIOUserHeader, error: VFIOUserWireError, at: Int)?
        var at = 0
        var taken = 0
        while stream.count - at >= VFIOUserHeader.size {
            let header = VFIOUserHeader.decode(stream[at ..< at + VFIOUserHeader.size])
            let size = Int(header.messageSize)
            let sizeError = VFIOUserCodec.checkAnnouncedSize(header, limits: limits)
            try check((sizeError == nil) == (VFIOUserHeader.size ... limits.maxMessageSize).contains(size),
                      "message \(expected.count): checkAnnouncedSize says \(sizeError.map(\.description) ?? "fine") for size \(size), the limit is \(limits.maxMessageSize)")
            if let sizeError {
                refusal = (header, sizeError, at)
                break
            }
            guard stream.count - at >= size else { break }
            var fds: [Int32] = []
            while taken < batches.count, batches[taken].position < at + size {
                fds += batches[taken].fds
                taken += 1
            }
            expected.append(ReferenceMessage(header: header, range: at ..< at + size, fds: fds))
            at += size
        }

        try check(results.count == expected.count + (refusal == nil ? 0 : 1),
                  "the stream decoder gave \(results.count) results, the reference parse \(expected.count) messages\(refusal == nil ? "" : " and a refusal") (chunking \(chunkSelector & 7), \(stream.count) bytes)")
        var given: [Int32] = []
        for (i, reference) in expected.enumerated() {
            guard case let .success(message) = results[i] else {
                throw Violation("message \(i): the stream decoder gave \(results[i]), the reference parse a \(reference.range.count)-byte message")
            }
            try check(message.header == reference.header && message.bytes.elementsEqual(stream[reference.range]),
                      "message \(i): the stream decoder gave \(message.header) with \(hexBytes(message.bytes)), the reference \(reference.header) at \(reference.range)")
            try check(message.fds == reference.fds, "message \(i): came with descriptors \(message.fds), the reference gives it \(reference.fds)")
            given += message.fds
            try checkMessage(stream[reference.range], limits: limits, index: i)
            // What a framing layer off by one byte would hand over.
            if reference.range.upperBound < stream.count {
                try expectRefusal(.trailingBytes, of: stream[reference.range.lowerBound ... reference.range.upperBound], limits, "message \(i) with the next byte")
            }
            try expectRefusal(.truncated, of: stream[reference.range.dropLast()], limits, "message \(i) without its last byte")
        }
        if let refusal {
            guard case let .failure(error) = results.last! else {
                throw Violation("the stream decoder framed \(refusal.header), whose size checkAnnouncedSize refuses: \(refusal.error)")
            }
            try check(error.reason == refusal.error.reason && error.message.hasPrefix(refusal.error.message),
                      "the stream decoder refused \(refusal.header) with \(error), checkAnnouncedSize with \(refusal.error)")
            try check(decoder.isPoisoned && decoder.bufferedByteCount == 0, "the stream goes on after a size that cannot be framed")
            try checkRefusal(error, of: refusal.header, index: expected.count)
            // The codec checks the header the same way before anything else.
            let decoded = try decodeCommand(stream[refusal.at...], limits)
            try check(decoded == .failure(refusal.error),
                      "message \(expected.count): refused by checkAnnouncedSize with \(refusal.error) but decodeCommand gave \(decoded)")
        } else {
            try check(!decoder.isPoisoned && decoder.bufferedByteCount == stream.count - at,
                      "the stream decoder buffers \(decoder.bufferedByteCount) bytes\(decoder.isPoisoned ? " and is poisoned" : ""), the reference \(stream.count - at)")
            if at < stream.count {
                try expectRefusal(.truncated, of: stream[at...], limits, "the \(stream.count - at) bytes after the last whole message")
            }
        }
        given += decoder.takeAllFDs()
        try check(given == allFDs, "descriptors given out \(given), appended \(allFDs)")
        try check(decoder.takeAllFDs().isEmpty, "takeAllFDs left descriptors behind")
    }

    static func decodeCommand(_ bytes: ArraySlice<UInt8>, _ limits: VFIOUserLimits) throws(Violation) -> Result<VFIOUserCommandMessage, VFIOUserWireError> {
        try withExactCopy(bytes) { raw throws(Violation) in VFIOUserCodec.decodeCommand(raw, limits: limits) }
    }

    static func decodeReply(_ bytes: some Collection<UInt8>, _ limits: VFIOUserLimits) throws(Violation) -> Result<VFIOUserReplyMessage, VFIOUserWireError> {
        try withExactCopy(bytes) { raw throws(Violation) in VFIOUserCodec.decodeReply(raw, limits: limits) }
    }

    /// `bytes` must be refused as a command for `reason`, with a message.
    static func expectRefusal(_ reason: VFIOUserWireError.Reason, of bytes: ArraySlice<UInt8>, _ limits: VFIOUserLimits,
                              _ what: @autoclosure () -> String) throws(Violation) {
        let decoded = try decodeCommand(bytes, limits)
        guard case let .failure(error) = decoded, error.reason == reason else {
            throw Violation("\(what()) (\(bytes.count) bytes: \(hexBytes(bytes))) gave \(decoded), not a \(reason.rawValue) refusal")
        }
        try check(!error.message.isEmpty, "\(what()): refused with an empty message")
        if bytes.count < VFIOUserHeader.size {
            try check(error.header == nil && VFIOUserCodec.encodeErrorReply(for: error) == nil,
                      "\(what()): \(bytes.count) bytes cannot hold a header, but the refusal has one: \(error)")
        }
    }

    /// One whole message, as the server and as a client decode it.
    static func checkMessage(_ message: ArraySlice<UInt8>, limits: VFIOUserLimits, index i: Int) throws(Violation) {
        let header = VFIOUserHeader.decode(message.prefix(VFIOUserHeader.size))
        let asCommand = try decodeCommand(message, limits)
        switch asCommand {
        case let .success(decoded):
            try checkCommand(decoded, message: message, header: header, limits: limits, index: i)
        case let .failure(error):
            try checkRefusal(error, of: header, index: i)
        }
        if let accepted = referenceAcceptsCommand(header, payload: message.dropFirst(VFIOUserHeader.size), limits: limits) {
            let decoded = if case .success = asCommand { true } else { false }
            try check(accepted == decoded,
                      "message \(i): \(header) is \(accepted ? "well-formed" : "malformed") by vfio-user.rst's layout, yet decodeCommand gave \(asCommand)")
        }

        let asReply = try decodeReply(message, limits)
        switch asReply {
        case let .success(decoded):
            if case .success = asCommand { throw Violation("message \(i): \(hexBytes(message)) decodes both as a command and as a reply") }
            try checkReply(decoded, message: message, header: header, limits: limits, index: i)
        case let .failure(error):
            try check(!error.message.isEmpty, "message \(i): reply refused with an empty message")
            try check(error.header == header, "message \(i): reply refusal carries header \(String(describing: error.header)), the message has \(header)")
        }
    }

    /// A refusal of a message whose header was read.
    static func checkRefusal(_ error: VFIOUserWireError, of header: VFIOUserHeader, index i: Int) throws(Violation) {
        try check(!error.message.isEmpty, "message \(i): refused (\(error.reason)) with an empty message")
        try check(error.header == header, "message \(i): the refusal carries header \(String(describing: error.header)), the message has \(header)")
        try check(error.errno != 0, "message \(i): refusal \(error) would be answered with errno 0")
        let reply = VFIOUserCodec.encodeErrorReply(for: error)
        guard !header.noReply, !header.isReply else {
            try check(reply == nil, "message \(i): \(header) wants no reply, but the refusal has one")
            return
        }
        guard let reply else { throw Violation("message \(i): no error reply for the refusal of \(header): \(error)") }
        try check(reply.count == VFIOUserHeader.size, "message \(i): the error reply is \(reply.count) bytes, not the header alone")
        let replyHeader = VFIOUserHeader.decode(reply)
        try check(replyHeader == VFIOUserHeader(messageID: header.messageID, command: header.command, messageSize: UInt32(VFIOUserHeader.size),
                                                flags: VFIOUserHeader.typeReply | VFIOUserHeader.errorFlag, error: error.errno),
                  "message \(i): error reply \(replyHeader) for \(header) refused with errno \(error.errno)")
        // Only commands the codec decodes have replies it decodes; the rest
        // are answered (EOPNOTSUPP) but a client of this codec cannot read them.
        guard VFIOUserCommand(rawValue: header.command)?.isDecoded == true else { return }
        let decoded = try decodeReply(reply, VFIOUserLimits())
        try check(decoded == .success(VFIOUserReplyMessage(header: replyHeader, outcome: .error(errno: error.errno))),
                  "message \(i): the error reply \(hexBytes(reply)) decodes as \(decoded)")
    }

    /// A decoded command: its header, layout and limits, and the round trip.
    static func checkCommand(_ decoded: VFIOUserCommandMessage, message: ArraySlice<UInt8>, header: VFIOUserHeader,
                             limits: VFIOUserLimits, index i: Int) throws(Violation) {
        try check(decoded.header == header, "message \(i): decoded header \(decoded.header), the bytes say \(header)")
        try check(header.isCommand && !header.isError && header.flags & ~VFIOUserHeader.definedFlags == 0,
                  "message \(i): accepted as a command with flags \(hex(header.flags))")
        try check(decoded.request.command.rawValue == header.command && decoded.request.command.isDecoded,
                  "message \(i): \(decoded.request.command.name) decoded from command \(header.command)")
        try check(message.count <= limits.maxMessageSize, "message \(i): \(message.count) bytes accepted, above \(limits.maxMessageSize)")
        let payload = message.count - VFIOUserHeader.size
        switch decoded.request {
        case .version:
            try check(payload - VFIOUserVersion.fixedSize <= limits.maxVersionData,
                      "message \(i): VERSION with \(payload - VFIOUserVersion.fixedSize) bytes of data accepted, limit \(limits.maxVersionData)")
        case let .dmaMap(map):
            try check(payload == VFIOUserDMAMap.size && map.argsz == UInt32(VFIOUserDMAMap.size), "message \(i): DMA_MAP \(map) from a \(payload)-byte payload")
        case let .dmaUnmap(unmap):
            try check(payload == VFIOUserDMAUnmap.size && unmap.argsz >= UInt32(VFIOUserDMAUnmap.size), "message \(i): DMA_UNMAP \(unmap) from a \(payload)-byte payload")
        case let .deviceGetInfo(info):
            try check(payload == VFIOUserDeviceInfo.size && info.argsz >= UInt32(VFIOUserDeviceInfo.size), "message \(i): DEVICE_GET_INFO \(info) from a \(payload)-byte payload")
        case let .deviceGetRegionInfo(info):
            try check(payload == VFIOUserRegionInfo.size && info.argsz >= UInt32(VFIOUserRegionInfo.size), "message \(i): DEVICE_GET_REGION_INFO \(info) from a \(payload)-byte payload")
        case let .deviceGetIRQInfo(info):
            try check(payload == VFIOUserIRQInfo.size && info.argsz >= UInt32(VFIOUserIRQInfo.size), "message \(i): DEVICE_GET_IRQ_INFO \(info) from a \(payload)-byte payload")
        case let .deviceSetIRQs(set):
            let dataType = set.flags & VFIOUserIRQSet.dataTypes, action = set.flags & VFIOUserIRQSet.actions
            try check(dataType.nonzeroBitCount == 1 && action.nonzeroBitCount == 1 && set.flags == dataType | action,
                      "message \(i): DEVICE_SET_IRQS with flags \(hex(set.flags)) accepted")
            try check(set.boolData.count == (dataType == VFIOUserIRQSet.dataBool ? Int(set.count) : 0)
                      && payload == VFIOUserIRQSet.fixedSize + set.boolData.count && Int(set.argsz) == payload,
                      "message \(i): DEVICE_SET_IRQS \(set) from a \(payload)-byte payload")
        case let .regionRead(access):
            try check(payload == VFIOUserRegionAccess.size && Int(access.count) <= limits.maxDataTransfer,
                      "message \(i): REGION_READ \(access) accepted (max_data_xfer_size \(limits.maxDataTransfer))")
        case let .regionWrite(access, data):
            try check(data.count == Int(access.count) && data.count <= limits.maxDataTransfer && payload == VFIOUserRegionAccess.size + data.count,
                      "message \(i): REGION_WRITE \(access) with \(data.count) data bytes accepted (max_data_xfer_size \(limits.maxDataTransfer))")
        case .deviceReset:
            try check(payload == 0, "message \(i): DEVICE_RESET with a \(payload)-byte payload")
        }

        let encoded = VFIOUserCodec.encodeCommand(decoded.request, messageID: header.messageID, noReply: header.noReply)
        // The encoder's VERSION text is the serializer's, at most a few hundred bytes whatever the peer sent.
        let roomy = VFIOUserLimits(maxDataTransfer: limits.maxDataTransfer, maxVersionData: max(limits.maxVersionData, VFIOUserLimits().maxVersionData))
        let again = try decodeCommand(encoded[...], roomy)
        guard case let .success(back) = again, back.request == decoded.request,
              back.header == VFIOUserHeader(messageID: header.messageID, command: header.command, messageSize: UInt32(encoded.count), flags: header.flags) else {
            throw Violation("message \(i): \(decoded.request) re-encodes to \(hexBytes(encoded)), which decodes as \(again)")
        }
        if case .version = decoded.request {
            let twice = VFIOUserCodec.encodeCommand(back.request, messageID: header.messageID, noReply: header.noReply)
            try check(twice == encoded, "message \(i): VERSION is not a fixed point of decode-then-encode: \(hexBytes(encoded)) then \(hexBytes(twice))")
        } else {
            try check(encoded.elementsEqual(withoutErrorField(message)),
                      "message \(i): \(decoded.request) re-encodes to \(hexBytes(encoded)), received \(hexBytes(message))")
        }
    }

    /// A decoded reply: its header and limits, and the round trip.
    static func checkReply(_ decoded: VFIOUserReplyMessage, message: ArraySlice<UInt8>, header: VFIOUserHeader,
                           limits: VFIOUserLimits, index i: Int) throws(Violation) {
        try check(decoded.header == header, "message \(i): decoded reply header \(decoded.header), the bytes say \(header)")
        try check(header.isReply && !header.noReply && header.flags & ~VFIOUserHeader.definedFlags == 0,
                  "message \(i): accepted as a reply with flags \(hex(header.flags))")
        let reply: VFIOUserReply
        switch decoded.outcome {
        case let .error(errno):
            try check(header.isError && errno == header.error && message.count == VFIOUserHeader.size,
                      "message \(i): error reply \(errno) from \(header), \(message.count) bytes")
            return
        case let .success(success):
            try check(!header.isError, "message \(i): \(header) has the error flag but decoded as \(success)")
            reply = success
        }
        try check(reply.command.rawValue == header.command, "message \(i): reply to \(reply.command.name) decoded from command \(header.command)")
        let payload = message.count - VFIOUserHeader.size
        switch reply {
        case let .regionRead(access, data):
            try check(data.count == Int(access.count) && data.count <= limits.maxDataTransfer && payload == VFIOUserRegionAccess.size + data.count,
                      "message \(i): REGION_READ reply \(access) with \(data.count) data bytes accepted (max_data_xfer_size \(limits.maxDataTransfer))")
        case let .deviceGetRegionInfo(_, capabilities):
            try check(payload == VFIOUserRegionInfo.size + capabilities.count, "message \(i): region info with \(capabilities.count) capability bytes from a \(payload)-byte payload")
        case .version:
            try check(payload - VFIOUserVersion.fixedSize <= limits.maxVersionData, "message \(i): VERSION reply with \(payload - VFIOUserVersion.fixedSize) bytes of data accepted")
        default:
            break
        }

        let encoded = VFIOUserCodec.encodeReply(reply, messageID: header.messageID)
        let roomy = VFIOUserLimits(maxDataTransfer: limits.maxDataTransfer, maxVersionData: max(limits.maxVersionData, VFIOUserLimits().maxVersionData))
        let again = try decodeReply(encoded, roomy)
        guard case let .success(back) = again, back.outcome == .success(reply), back.header.messageID == header.messageID,
              back.header.flags == VFIOUserHeader.typeReply, Int(back.header.messageSize) == encoded.count else {
            throw Violation("message \(i): reply \(reply) re-encodes to \(hexBytes(encoded)), which decodes as \(again)")
        }
        if case .version = reply {
            guard case let .success(backReply) = back.outcome else { return }
            let twice = VFIOUserCodec.encodeReply(backReply, messageID: header.messageID)
            try check(twice == encoded, "message \(i): VERSION reply is not a fixed point of decode-then-encode")
        } else {
            try check(encoded.elementsEqual(withoutErrorField(message)),
                      "message \(i): reply \(reply) re-encodes to \(hexBytes(encoded)), received \(hexBytes(message))")
        }
    }

    /// The message with its header's error field zeroed: a command's is
    /// reserved and a successful reply's unused, and the encoders write 0.
    static func withoutErrorField(_ message: ArraySlice<UInt8>) -> [UInt8] {
        var bytes = Array(message)
        for k in 12 ..< 16 { bytes[k] = 0 }
        return bytes
    }

    /// Whether vfio-user.rst's tables make this a command the server can act
    /// on, written from the spec independently of the codec; nil for VERSION,
    /// whose JSON is checked by the round trip instead.
    static func referenceAcceptsCommand(_ header: VFIOUserHeader, payload: ArraySlice<UInt8>, limits: VFIOUserLimits) -> Bool? {
        // Flags: type 0 (command), bit 4 (no reply) allowed, nothing else.
        guard header.flags & ~UInt32(0x10) == 0 else { return false }
        let p = Array(payload)
        func u32(_ at: Int) -> UInt32 { (0 ..< 4).reduce(0) { $0 | UInt32(p[at + $1]) << (8 * $1) } }
        switch header.command {
        case 1: return nil
        case 2: return p.count == 32 && u32(0) == 32 // DMA_MAP: argsz is the structure's size
        case 3: return p.count == 24 && u32(0) >= 24 // DMA_UNMAP: room for the echoed entry
        case 4, 7: return p.count == 16 && u32(0) >= 16 // DEVICE_GET_INFO, DEVICE_GET_IRQ_INFO
        case 5: return p.count == 32 && u32(0) >= 32 // DEVICE_GET_REGION_INFO
        case 8: // DEVICE_SET_IRQS: argsz is the whole payload; one data type (bits 0-2), one action (bits 3-5)
            guard p.count >= 20, Int(u32(0)) == p.count else { return false }
            let flags = u32(4)
            guard flags < 64, [1, 2, 4].contains(flags & 7), [8, 16, 32].contains(flags & 0x38) else { return false }
            return p.count == 20 + (flags & 7 == 2 ? Int(u32(16)) : 0)
        case 9: return p.count == 16 && Int(u32(12)) <= limits.maxDataTransfer // REGION_READ
        case 10: return p.count >= 16 && Int(u32(12)) <= limits.maxDataTransfer && p.count == 16 + Int(u32(12)) // REGION_WRITE
        case 13: return p.isEmpty // DEVICE_RESET
        default: return false // unassigned, or not served (DMA_READ/WRITE, migration, ...)
        }
    }
}
