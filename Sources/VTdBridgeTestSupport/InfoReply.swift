/// Hand-built VFIO_IOMMU_GET_INFO replies, written byte by byte from the
/// layout in include/uapi/linux/vfio.h (not from the CVFIO constants, so the
/// parser is checked against an independent reading of the ABI).
public enum InfoReply {
    public static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        if bytes.count < offset + MemoryLayout<T>.size {
            bytes += [UInt8](repeating: 0, count: offset + MemoryLayout<T>.size - bytes.count)
        }
        for i in 0..<MemoryLayout<T>.size {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i))
        }
    }

    /// The 24-byte struct vfio_iommu_type1_info.
    public static func header(argsz: Int, flags: UInt32, pageSizes: UInt64, capOffset: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        put(UInt32(argsz), at: 0, in: &bytes)
        put(flags, at: 4, in: &bytes)
        put(pageSizes, at: 8, in: &bytes)
        put(capOffset, at: 16, in: &bytes)
        return bytes
    }

    /// A capability: header {id, version, next} then payload.
    public static func capability(id: UInt16, version: UInt16 = 1, next: UInt32, payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8)
        put(id, at: 0, in: &bytes)
        put(version, at: 2, in: &bytes)
        put(next, at: 4, in: &bytes)
        return bytes + payload
    }

    public static func iovaPayload(count: UInt32? = nil, _ ranges: [(UInt64, UInt64)]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8)
        put(count ?? UInt32(ranges.count), at: 0, in: &bytes)
        for (start, end) in ranges {
            var pair = [UInt8](repeating: 0, count: 16)
            put(start, at: 0, in: &pair)
            put(end, at: 8, in: &pair)
            bytes += pair
        }
        return bytes
    }

    public static func availPayload(_ avail: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8) // u32 avail, padded to 8 as the kernel aligns caps
        put(avail, at: 0, in: &bytes)
        return bytes
    }

    /// A well-formed chain as the kernel lays it out at `start`, with
    /// absolute `next` offsets.
    public static func chain(iovaRanges: [(UInt64, UInt64)]?, dmaAvailable: UInt32?, startingAt start: Int) -> [UInt8] {
        var caps: [(UInt16, [UInt8])] = []
        if let iovaRanges { caps.append((1, iovaPayload(iovaRanges))) }
        if let dmaAvailable { caps.append((3, availPayload(dmaAvailable))) }
        var bytes: [UInt8] = []
        for (index, (id, payload)) in caps.enumerated() {
            let end = start + bytes.count + 8 + payload.count
            let next = index == caps.count - 1 ? 0 : UInt32(end)
            bytes += capability(id: id, next: next, payload: payload)
        }
        return bytes
    }

    /// A complete reply: header plus chain, argsz covering both.
    public static func full(pageSizes: UInt64 = 0x1000, chain: [UInt8]) -> [UInt8] {
        let flags: UInt32 = chain.isEmpty ? 1 : 3
        var bytes = header(argsz: 24 + chain.count, flags: flags, pageSizes: pageSizes,
                           capOffset: chain.isEmpty ? 0 : 24)
        bytes += chain
        return bytes
    }
}
