import VTd
import Wire

/// Fuzz target 4: the vfio-user codec (`VFIOUserCodec`: `checkAnnouncedSize`,
/// `decodeCommand`, `decodeReply`, the encoders and the error reply) as a
/// stream server drives it.
///
/// Input: one configuration byte, then the bytes a vfio-user client sent.
/// The stream is cut the way a server reading a Unix stream socket cuts it:
/// 16 header bytes, `checkAnnouncedSize` before anything else is read (a
/// refusal there ends the connection, since the next message's start is
/// unknown), then exactly the message size the header announces, which goes
/// to `decodeCommand` (and, for the client side, to `decodeReply`). Each
/// message is decoded from an allocation of exactly its size, so that
/// AddressSanitizer sees a read past it. Invariants:
///
/// - the size check agrees with the limits (`16 ... maxMessageSize`) and with
///   the decoder, which refuses the same header with the same error;
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
/// - the framing is exact: the same message with one byte more is refused
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

    static func runChecked(_ data: UnsafeRawBufferPointer) throws(Violation) {
        var input = FuzzReader(data)
        let limits = limits(input.u8(or: 1))
        let stream = Array(input.rest())
        var at = 0
        var index = 0
        while stream.count - at >= VFIOUserHeader.size {
            let header = VFIOUserHeader.decode(stream[at ..< at + VFIOUserHeader.size])
            let size = Int(header.messageSize)
            let refusal = VFIOUserCodec.checkAnnouncedSize(header, limits: limits)
            try check((refusal == nil) == (VFIOUserHeader.size ... limits.maxMessageSize).contains(size),
                      "message \(index): checkAnnouncedSize says \(refusal.map(\.description) ?? "fine") for size \(size), the limit is \(limits.maxMessageSize)")
            if let refusal {
                try checkRefusal(refusal, of: header, index: index)
                // The decoder checks the header the same way before anything else.
                let decoded = try decodeCommand(stream[at...], limits)
                try check(decoded == .failure(refusal),
                          "message \(index): refused by checkAnnouncedSize with \(refusal) but decodeCommand gave \(decoded)")
                return
            }
            guard stream.count - at >= size else {
                // The peer hung up in the middle of a message.
                try expectRefusal(.truncated, of: stream[at...], limits, "message \(index) cut short by the end of the stream")
                return
            }
            try checkMessage(stream[at ..< at + size], limits: limits, index: index)
            // What a framing layer off by one byte would hand over.
            if at + size < stream.count {
                try expectRefusal(.trailingBytes, of: stream[at ... at + size], limits, "message \(index) with the next byte")
            }
            try expectRefusal(.truncated, of: stream[at ..< at + size - 1], limits, "message \(index) without its last byte")
            at += size
            index += 1
        }
        if at < stream.count {
            try expectRefusal(.truncated, of: stream[at...], limits, "the \(stream.count - at) bytes after the last message")
        }
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
