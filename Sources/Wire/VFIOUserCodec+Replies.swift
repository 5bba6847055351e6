extension VFIOUserCodec {
    /// Encodes a successful reply to the command with `messageID`.
    public static func encodeReply(_ reply: VFIOUserReply, messageID: UInt16) -> [UInt8] {
        message(command: reply.command, messageID: messageID, flags: VFIOUserHeader.typeReply) { bytes in
            switch reply {
            case .version(let version): version.encode(into: &bytes)
            case .dmaMap, .deviceSetIRQs, .deviceReset: break
            case .dmaUnmap(let unmap): unmap.encode(into: &bytes)
            case .deviceGetInfo(let info): info.encode(into: &bytes)
            case .deviceGetRegionInfo(let info, let capabilities):
                info.encode(into: &bytes)
                bytes.append(contentsOf: capabilities)
            case .deviceGetIRQInfo(let info): info.encode(into: &bytes)
            case .regionRead(let access, let data):
                access.encode(into: &bytes)
                bytes.append(contentsOf: data)
            case .regionWrite(let access): access.encode(into: &bytes)
            }
        }
    }

    /// Encodes a failure reply: the header alone, with the error flag and
    /// `errno` (the spec allows no payload in an error reply). `command` is
    /// raw so that an unknown command can be answered too.
    public static func encodeErrorReply(messageID: UInt16, command: UInt16, errno: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        VFIOUserHeader(messageID: messageID, command: command, messageSize: UInt32(VFIOUserHeader.size),
                       flags: VFIOUserHeader.typeReply | VFIOUserHeader.errorFlag, error: errno).encode(into: &bytes)
        return bytes
    }

    /// The error reply for a refused command, or nil when the refusal came
    /// before a header could be read (a framing failure: close the socket),
    /// or when the command asked for no reply.
    public static func encodeErrorReply(for error: VFIOUserWireError) -> [UInt8]? {
        guard let header = error.header, !header.noReply, !header.isReply else { return nil }
        return encodeErrorReply(messageID: header.messageID, command: header.command, errno: error.errno)
    }

    /// Decodes one whole reply message, as a client receives it.
    public static func decodeReply(_ message: UnsafeRawBufferPointer, limits: VFIOUserLimits = VFIOUserLimits())
        -> Result<VFIOUserReplyMessage, VFIOUserWireError> {
        do throws(VFIOUserWireError) {
            let (header, command) = try readHeader(message, wantReply: true, limits: limits)
            let payload = LittleEndianReader(UnsafeRawBufferPointer(rebasing: message[payloadOffset...]))
            if header.isError {
                try expectLength(payload, 0, header, "an error reply is the header alone")
                return .success(VFIOUserReplyMessage(header: header, outcome: .error(errno: header.error)))
            }
            let reply = try decodeReplyPayload(command, payload, header, limits)
            return .success(VFIOUserReplyMessage(header: header, outcome: .success(reply)))
        } catch {
            return .failure(error)
        }
    }

    /// `decodeReply` over an array.
    public static func decodeReply(_ message: [UInt8], limits: VFIOUserLimits = VFIOUserLimits())
        -> Result<VFIOUserReplyMessage, VFIOUserWireError> {
        message.withUnsafeBytes { decodeReply($0, limits: limits) }
    }

    private static func decodeReplyPayload(_ command: VFIOUserCommand, _ r: LittleEndianReader, _ header: VFIOUserHeader,
                                           _ limits: VFIOUserLimits) throws(VFIOUserWireError) -> VFIOUserReply {
        switch command {
        case .version:
            try expectAtLeast(r, VFIOUserVersion.fixedSize, header, "major u16, minor u16, optional JSON")
            return .version(try withHeader(header) { () throws(VFIOUserWireError) in try VFIOUserVersion.decode(r, limits: limits) })
        case .dmaMap:
            try expectLength(r, 0, header, "DMA_MAP's reply has no payload")
            return .dmaMap
        case .dmaUnmap:
            try expectLength(r, VFIOUserDMAUnmap.size, header, "the unmapped entry, echoed")
            return .dmaUnmap(VFIOUserDMAUnmap.decode(r))
        case .deviceGetInfo:
            try expectLength(r, VFIOUserDeviceInfo.size, header, "argsz, flags, num_regions, num_irqs u32")
            return .deviceGetInfo(VFIOUserDeviceInfo.decode(r))
        case .deviceGetRegionInfo:
            try expectAtLeast(r, VFIOUserRegionInfo.size, header, "argsz, flags, index, cap_offset u32; size, offset u64; then capabilities")
            let info = VFIOUserRegionInfo.decode(r)
            return .deviceGetRegionInfo(info, capabilities: Array(r.slice(VFIOUserRegionInfo.size, r.count - VFIOUserRegionInfo.size)))
        case .deviceGetIRQInfo:
            try expectLength(r, VFIOUserIRQInfo.size, header, "argsz, flags, index, count u32")
            return .deviceGetIRQInfo(VFIOUserIRQInfo.decode(r))
        case .deviceSetIRQs:
            try expectLength(r, 0, header, "DEVICE_SET_IRQS's reply has no payload")
            return .deviceSetIRQs
        case .regionRead:
            try expectAtLeast(r, VFIOUserRegionAccess.size, header, "offset u64, region, count u32, then count data bytes")
            let access = VFIOUserRegionAccess.decode(r)
            try checkTransfer(access.count, header, limits)
            try expectLength(r, VFIOUserRegionAccess.size + Int(access.count), header, "16 bytes then count \(access.count) data bytes")
            return .regionRead(access, data: Array(r.slice(VFIOUserRegionAccess.size, Int(access.count))))
        case .regionWrite:
            try expectLength(r, VFIOUserRegionAccess.size, header, "offset u64, region, count u32")
            return .regionWrite(VFIOUserRegionAccess.decode(r))
        case .deviceReset:
            try expectLength(r, 0, header, "DEVICE_RESET's reply has no payload")
            return .deviceReset
        case .deviceGetRegionIOFDs, .dmaRead, .dmaWrite, .regionWriteMulti, .deviceFeature, .migDataRead, .migDataWrite:
            preconditionFailure("readHeader lets only decoded commands through, not \(command.name)")
        }
    }
}
