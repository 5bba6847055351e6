extension EventCodec {
    /// The frame (header and payload) for `request` with `tag` (PROTOCOL.md
    /// §1.2, §1.6). For clients: the simulator and tests. It encodes the
    /// values as given, without the decoder's checks, so a test can build a
    /// request the daemon must refuse; counts are written as the array sizes.
    /// The `SET_MEM_TABLE` descriptors travel beside the bytes (§1.3).
    public static func encodeRequest(_ request: EventRequest, tag: UInt64) -> [UInt8] {
        var payload: [UInt8] = []
        switch request {
        case .hello(let version, let flags, let cap, let ecap):
            payload.reserveCapacity(24)
            payload.appendLittleEndian(version)
            payload.appendLittleEndian(flags)
            payload.appendLittleEndian(cap)
            payload.appendLittleEndian(ecap)
        case .setMemTable(let regions):
            payload.reserveCapacity(8 + MemoryRegionDescriptor.wireSize * regions.count)
            appendListPrefix(&payload, regions.count)
            for region in regions {
                payload.appendLittleEndian(region.gpa)
                payload.appendLittleEndian(region.size)
                payload.appendLittleEndian(region.offset)
            }
        case .setRootTable(let rtaddr):
            payload.appendLittleEndian(rtaddr)
        case .setTranslation(let enabled):
            payload.appendLittleEndian(UInt32(enabled ? 1 : 0))
            payload.appendZeros(4)
        case .reset, .ready, .ping:
            break
        case .invalidate(let words):
            payload.reserveCapacity(8 + InvalidationWords.wireSize * words.count)
            appendListPrefix(&payload, words.count)
            for word in words {
                payload.appendLittleEndian(word.low)
                payload.appendLittleEndian(word.high)
            }
        case .notify(let entries):
            payload.reserveCapacity(8 + NotifierEntry.wireSize * entries.count)
            appendListPrefix(&payload, entries.count)
            for entry in entries {
                payload.appendLittleEndian(entry.iova)
                payload.appendLittleEndian(entry.translatedAddress)
                payload.appendLittleEndian(entry.addressMask)
                payload.appendLittleEndian(entry.sourceID)
                payload.append(entry.permission.rawValue)
                payload.appendZeros(5)
            }
        }
        return frame(type: request.type.rawValue, tag: tag, payload: payload)
    }

    /// A frame: the 16-byte header for `payload`, then `payload` (§1.2).
    public static func frame(type: UInt32, tag: UInt64, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(FrameHeader.size + payload.count)
        FrameHeader(type: type, length: UInt32(truncatingIfNeeded: payload.count), tag: tag).encode(into: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }

    private static func appendListPrefix(_ payload: inout [UInt8], _ count: Int) {
        payload.appendLittleEndian(UInt32(truncatingIfNeeded: count))
        payload.appendZeros(4)
    }
}
