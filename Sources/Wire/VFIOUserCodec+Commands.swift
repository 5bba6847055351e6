import VTd

extension VFIOUserCodec {
    /// Decodes one whole command message (header and payload, nothing more).
    /// On failure, the error's `header` (when present) gives the message ID
    /// and command for the error reply, `encodeErrorReply(for:)`.
    public static func decodeCommand(_ message: UnsafeRawBufferPointer, limits: VFIOUserLimits = VFIOUserLimits())
        -> Result<VFIOUserCommandMessage, VFIOUserWireError> {
        do throws(VFIOUserWireError) {
            let (header, command) = try readHeader(message, wantReply: false, limits: limits)
            let payload = LittleEndianReader(UnsafeRawBufferPointer(rebasing: message[payloadOffset...]))
            let request = try decodeRequest(command, payload, header, limits)
            return .success(VFIOUserCommandMessage(header: header, request: request))
        } catch {
            return .failure(error)
        }
    }

    /// `decodeCommand` over an array.
    public static func decodeCommand(_ message: [UInt8], limits: VFIOUserLimits = VFIOUserLimits())
        -> Result<VFIOUserCommandMessage, VFIOUserWireError> {
        message.withUnsafeBytes { decodeCommand($0, limits: limits) }
    }

    /// Encodes a command, as a client sends it.
    public static func encodeCommand(_ request: VFIOUserRequest, messageID: UInt16, noReply: Bool = false) -> [UInt8] {
        let flags = VFIOUserHeader.typeCommand | (noReply ? VFIOUserHeader.noReplyFlag : 0)
        return message(command: request.command, messageID: messageID, flags: flags) { bytes in
            switch request {
            case .version(let version): version.encode(into: &bytes)
            case .dmaMap(let map): map.encode(into: &bytes)
            case .dmaUnmap(let unmap): unmap.encode(into: &bytes)
            case .deviceGetInfo(let info): info.encode(into: &bytes)
            case .deviceGetRegionInfo(let info): info.encode(into: &bytes)
            case .deviceGetIRQInfo(let info): info.encode(into: &bytes)
            case .deviceSetIRQs(let set): set.encode(into: &bytes)
            case .regionRead(let access): access.encode(into: &bytes)
            case .regionWrite(let access, let data):
                access.encode(into: &bytes)
                bytes.append(contentsOf: data)
            case .deviceReset: break
            }
        }
    }

    private static func decodeRequest(_ command: VFIOUserCommand, _ r: LittleEndianReader, _ header: VFIOUserHeader,
                                      _ limits: VFIOUserLimits) throws(VFIOUserWireError) -> VFIOUserRequest {
        switch command {
        case .version:
            try expectAtLeast(r, VFIOUserVersion.fixedSize, header, "major u16, minor u16, optional JSON")
            return .version(try withHeader(header) { () throws(VFIOUserWireError) in try VFIOUserVersion.decode(r, limits: limits) })
        case .dmaMap:
            try expectLength(r, VFIOUserDMAMap.size, header, "argsz, flags u32; offset, address, size u64")
            let map = VFIOUserDMAMap.decode(r)
            // The spec defines argsz here as the structure's size (there is no reply payload).
            try expectArgsz(map.argsz, equal: VFIOUserDMAMap.size, header, "DMA_MAP's argsz is the size of its 32-byte structure")
            return .dmaMap(map)
        case .dmaUnmap:
            try expectLength(r, VFIOUserDMAUnmap.size, header, "argsz, flags u32; address, size u64")
            let unmap = VFIOUserDMAUnmap.decode(r)
            try expectArgsz(unmap.argsz, atLeast: VFIOUserDMAUnmap.size, header, "the reply echoes the 24-byte entry")
            return .dmaUnmap(unmap)
        case .deviceGetInfo:
            try expectLength(r, VFIOUserDeviceInfo.size, header, "argsz, flags, num_regions, num_irqs u32")
            let info = VFIOUserDeviceInfo.decode(r)
            try expectArgsz(info.argsz, atLeast: VFIOUserDeviceInfo.size, header, "the reply is 16 bytes")
            return .deviceGetInfo(info)
        case .deviceGetRegionInfo:
            try expectLength(r, VFIOUserRegionInfo.size, header, "argsz, flags, index, cap_offset u32; size, offset u64")
            let info = VFIOUserRegionInfo.decode(r)
            try expectArgsz(info.argsz, atLeast: VFIOUserRegionInfo.size, header, "the reply is at least 32 bytes")
            return .deviceGetRegionInfo(info)
        case .deviceGetIRQInfo:
            try expectLength(r, VFIOUserIRQInfo.size, header, "argsz, flags, index, count u32")
            let info = VFIOUserIRQInfo.decode(r)
            try expectArgsz(info.argsz, atLeast: VFIOUserIRQInfo.size, header, "the reply is 16 bytes")
            return .deviceGetIRQInfo(info)
        case .deviceSetIRQs:
            return .deviceSetIRQs(try decodeIRQSet(r, header))
        case .regionRead:
            try expectLength(r, VFIOUserRegionAccess.size, header, "offset u64, region, count u32")
            let access = VFIOUserRegionAccess.decode(r)
            try checkTransfer(access.count, header, limits)
            return .regionRead(access)
        case .regionWrite:
            try expectAtLeast(r, VFIOUserRegionAccess.size, header, "offset u64, region, count u32, then count data bytes")
            let access = VFIOUserRegionAccess.decode(r)
            try checkTransfer(access.count, header, limits)
            try expectLength(r, VFIOUserRegionAccess.size + Int(access.count), header, "16 bytes then count \(access.count) data bytes")
            return .regionWrite(access, data: Array(r.slice(VFIOUserRegionAccess.size, Int(access.count))))
        case .deviceReset:
            try expectLength(r, 0, header, "DEVICE_RESET has no payload")
            return .deviceReset
        case .deviceGetRegionIOFDs, .dmaRead, .dmaWrite, .regionWriteMulti, .deviceFeature, .migDataRead, .migDataWrite:
            preconditionFailure("readHeader lets only decoded commands through, not \(command.name)")
        }
    }

    private static func decodeIRQSet(_ r: LittleEndianReader, _ header: VFIOUserHeader) throws(VFIOUserWireError) -> VFIOUserIRQSet {
        try expectAtLeast(r, VFIOUserIRQSet.fixedSize, header, "argsz, flags, index, start, count u32, then optional bool data")
        let argsz = r.u32(0), flags = r.u32(4), count = r.u32(16)
        // argsz is the whole payload here (there is no reply payload).
        try expectArgsz(argsz, equal: r.count, header, "DEVICE_SET_IRQS's argsz is the size of its payload, data included")
        let undefined = flags & ~(VFIOUserIRQSet.dataTypes | VFIOUserIRQSet.actions)
        let data = flags & VFIOUserIRQSet.dataTypes, action = flags & VFIOUserIRQSet.actions
        // Linux's vfio_set_irqs_validate_and_prepare demands exactly one data
        // type and one action; the spec calls each set mutually exclusive.
        guard undefined == 0, data.nonzeroBitCount == 1, action.nonzeroBitCount == 1 else {
            throw VFIOUserWireError(.malformed,
                "\(header): DEVICE_SET_IRQS flags \(hex(flags)) must have exactly one data type (bits 0-2: NONE, BOOL, EVENTFD) and one action (bits 3-5: MASK, UNMASK, TRIGGER), and nothing else",
                header: header)
        }
        let expected = VFIOUserIRQSet.fixedSize + (data == VFIOUserIRQSet.dataBool ? Int(count) : 0)
        try expectLength(r, expected, header,
                         data == VFIOUserIRQSet.dataBool ? "20 bytes then one bool byte per sub-index, count \(count)" : "20 bytes; only DATA_BOOL carries data")
        return VFIOUserIRQSet.decode(r)
    }

    static func expectArgsz(_ argsz: UInt32, equal expected: Int, _ header: VFIOUserHeader, _ why: String) throws(VFIOUserWireError) {
        guard Int(argsz) != expected else { return }
        throw VFIOUserWireError(.badArgsz, "\(header): argsz is \(argsz); it must be \(expected) (\(why))", header: header)
    }

    static func expectArgsz(_ argsz: UInt32, atLeast minimum: Int, _ header: VFIOUserHeader, _ why: String) throws(VFIOUserWireError) {
        guard Int(argsz) < minimum else { return }
        throw VFIOUserWireError(.badArgsz,
            "\(header): argsz is \(argsz), the room for the reply payload; it must be at least \(minimum) (\(why))", header: header)
    }

    /// Runs a payload decoder whose errors do not know the header yet, and adds it.
    static func withHeader<T>(_ header: VFIOUserHeader, _ body: () throws(VFIOUserWireError) -> T) throws(VFIOUserWireError) -> T {
        do throws(VFIOUserWireError) {
            return try body()
        } catch {
            var error = error
            error.header = header
            error.message = "\(header): \(error.message)"
            throw error
        }
    }
}
