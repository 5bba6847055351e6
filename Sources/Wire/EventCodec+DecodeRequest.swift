import VTd

extension EventCodec {
    /// Decodes and checks a request payload (PROTOCOL.md §1.6) that arrived in
    /// a frame of raw type `type` with `fdCount` file descriptors (§1.3).
    ///
    /// Checks everything that depends only on the bytes: exact length for the
    /// type, counts within their ranges, reserved fields 0, the HELLO version,
    /// the RTADDR low bits, notifier-entry layout, and for `SET_MEM_TABLE` the
    /// region alignment, size and overlap rules (status `MEMORY`, as §1.7 lists
    /// alignment and overlap under it) and one descriptor per region (`FDS`).
    /// Session rules (§1.5) and capability checks are the daemon's.
    ///
    /// On failure the caller closes the frame's descriptors and replies with
    /// the error's status and message.
    public static func decodeRequest(type: UInt32, payload: UnsafeRawBufferPointer, fdCount: Int) -> Result<EventRequest, WireError> {
        guard let kind = EventType(rawValue: type) else {
            return .failure(WireError(status: .unknownType, message:
                "request type \(type) (\(hex(type))) is unknown; this daemon speaks protocol version 1, types 1 (HELLO) to 9 (PING) (PROTOCOL.md §1.6)"))
        }
        if payload.count > EventLimits.maxPayload {
            return .failure(WireError(status: .tooLarge, message:
                "\(kind.name) payload is \(payload.count) bytes, above the limit of \(EventLimits.maxPayload) (PROTOCOL.md §1.2); split the request"))
        }
        if fdCount > EventLimits.maxFDsPerFrame {
            return .failure(WireError(status: .fds, message:
                "\(kind.name) came with \(fdCount) file descriptors; at most \(EventLimits.maxFDsPerFrame) may accompany a frame (PROTOCOL.md §1.3)"))
        }
        if kind != .setMemTable, fdCount != 0 {
            return .failure(WireError(status: .fds, message:
                "\(kind.name) came with \(fdCount) file descriptor\(fdCount == 1 ? "" : "s"), but only SET_MEM_TABLE carries descriptors; they were closed. Send descriptors only with the sendmsg that carries a SET_MEM_TABLE frame (PROTOCOL.md §1.3)"))
        }
        let reader = LittleEndianReader(payload)
        switch kind {
        case .hello: return decodeHello(reader)
        case .setMemTable: return decodeMemTable(reader, fdCount: fdCount)
        case .setRootTable: return decodeRootTable(reader)
        case .setTranslation: return decodeTranslation(reader)
        case .reset: return expectEmpty(reader, kind).map { .reset }
        case .ready: return expectEmpty(reader, kind).map { .ready }
        case .ping: return expectEmpty(reader, kind).map { .ping }
        case .invalidate: return decodeInvalidate(reader)
        case .notify: return decodeNotify(reader)
        }
    }

    /// `decodeRequest` over an array (e.g. `FrameDecoder.Frame.payload`).
    public static func decodeRequest(type: UInt32, payload: [UInt8], fdCount: Int) -> Result<EventRequest, WireError> {
        payload.withUnsafeBytes { decodeRequest(type: type, payload: $0, fdCount: fdCount) }
    }

    /// `decodeRequest` for a whole frame: its header's type, its payload and fds.
    public static func decodeRequest<FD>(_ frame: FrameDecoder<FD>.Frame) -> Result<EventRequest, WireError> {
        decodeRequest(type: frame.header.type, payload: frame.payload, fdCount: frame.fds.count)
    }

    // MARK: - Per type

    private static func expectLength(_ r: LittleEndianReader, _ kind: EventType, _ expected: Int, _ layout: String) -> WireError? {
        guard r.count != expected else { return nil }
        return .malformed("\(kind.name) payload is \(r.count) bytes; it must be exactly \(expected) (\(layout); PROTOCOL.md §1.6)")
    }

    private static func expectEmpty(_ r: LittleEndianReader, _ kind: EventType) -> Result<Void, WireError> {
        if let error = expectLength(r, kind, 0, "this type has no payload") { return .failure(error) }
        return .success(())
    }

    private static func decodeHello(_ r: LittleEndianReader) -> Result<EventRequest, WireError> {
        if let error = expectLength(r, .hello, 24, "version u32, flags u32, cap u64, ecap u64") { return .failure(error) }
        let version = r.u32(0), flags = r.u32(4)
        guard version == EventLimits.protocolVersion else {
            return .failure(WireError(status: .version, message:
                "HELLO version is \(version) (offset 0); this daemon supports version \(EventLimits.protocolVersion) only. Use a VMM whose vtd-bridge client speaks version 1 (PROTOCOL.md §1.6)"))
        }
        let unknown = flags & ~HelloFlags.defined.rawValue
        guard unknown == 0 else {
            return .failure(.malformed(
                "HELLO flags \(hex(flags)) (offset 4) set undefined bits \(hex(unknown)); only bit 0 (notifier mode) is defined, the others must be 0 (PROTOCOL.md §1.6)"))
        }
        return .success(.hello(version: version, flags: flags, cap: r.u64(8), ecap: r.u64(16)))
    }

    /// Checks the 8-byte `count, reserved` prefix shared by the list types and
    /// the total length it implies; returns the count.
    private static func decodeListPrefix(_ r: LittleEndianReader, _ kind: EventType, range: ClosedRange<Int>,
                                         elementSize: Int, element: String) -> Result<Int, WireError> {
        guard r.count >= 8 else {
            return .failure(.malformed(
                "\(kind.name) payload is \(r.count) bytes, shorter than its 8-byte count and reserved fields; send count u32, reserved u32, then \(elementSize)-byte \(element)s (PROTOCOL.md §1.6)"))
        }
        let count = Int(r.u32(0))
        guard range.contains(count) else {
            return .failure(.malformed(
                "\(kind.name) count is \(count) (offset 0); it must be \(range.lowerBound) to \(range.upperBound) (PROTOCOL.md §1.6)\(count == 0 ? "; send nothing instead of an empty list" : "; split the list over several requests")"))
        }
        let expected = 8 + elementSize * count
        guard r.count == expected else {
            return .failure(.malformed(
                "\(kind.name) payload is \(r.count) bytes, but count \(count) needs exactly \(expected) (8 + \(elementSize)·\(count)); the count and the \(element)s sent disagree (PROTOCOL.md §1.6)"))
        }
        let reserved = r.u32(4)
        guard reserved == 0 else {
            return .failure(.malformed("\(kind.name) reserved field at offset 4 is \(hex(reserved)); it must be 0 (PROTOCOL.md §1.6)"))
        }
        return .success(count)
    }

    private static func decodeMemTable(_ r: LittleEndianReader, fdCount: Int) -> Result<EventRequest, WireError> {
        let count: Int
        switch decodeListPrefix(r, .setMemTable, range: EventLimits.memoryRegions,
                                elementSize: MemoryRegionDescriptor.wireSize, element: "region") {
        case .success(let n): count = n
        case .failure(let error): return .failure(error)
        }
        guard fdCount == count else {
            return .failure(WireError(status: .fds, message:
                "SET_MEM_TABLE announces \(count) region\(count == 1 ? "" : "s") but \(fdCount) file descriptor\(fdCount == 1 ? "" : "s") came with the frame; send exactly one descriptor per region, in region order, with the sendmsg that carries this frame (PROTOCOL.md §1.3)"))
        }
        let page = EventLimits.pageSize
        var regions: [MemoryRegionDescriptor] = []
        regions.reserveCapacity(count)
        for i in 0 ..< count {
            let at = 8 + MemoryRegionDescriptor.wireSize * i
            let region = MemoryRegionDescriptor(gpa: r.u64(at), size: r.u64(at + 8), offset: r.u64(at + 16))
            func refuse(_ why: String) -> Result<EventRequest, WireError> {
                .failure(WireError(status: .memory, message: "SET_MEM_TABLE region \(i) (payload offset \(at)): \(why) (PROTOCOL.md §1.6)"))
            }
            if region.gpa % page != 0 { return refuse("gpa \(hex(region.gpa)) is not 4 KiB-aligned") }
            if region.size == 0 { return refuse("size is 0; a region must be a non-zero multiple of 4 KiB") }
            if region.size % page != 0 { return refuse("size \(hex(region.size)) is not a multiple of 4 KiB") }
            if region.offset % page != 0 { return refuse("offset \(hex(region.offset)) into descriptor \(i) is not 4 KiB-aligned") }
            if region.gpa > UInt64.max - (region.size - 1) {
                return refuse("gpa \(hex(region.gpa)) + size \(hex(region.size)) runs past the end of the 64-bit address space")
            }
            if region.offset > UInt64.max - (region.size - 1) {
                return refuse("offset \(hex(region.offset)) + size \(hex(region.size)) runs past the largest file offset")
            }
            regions.append(region)
        }
        // Regions must not overlap (§1.6). At most 64: sort their indices by gpa
        // and compare neighbours.
        let order = regions.indices.sorted { regions[$0].gpa < regions[$1].gpa }
        for k in order.indices.dropFirst() {
            let a = order[k - 1], b = order[k]
            let lastOfA = regions[a].gpa + (regions[a].size - 1)
            if regions[b].gpa <= lastOfA {
                let (lo, hi) = (min(a, b), max(a, b))
                func span(_ i: Int) -> String { "[\(hex(regions[i].gpa)), \(hex(regions[i].gpa &+ regions[i].size)))" }
                return .failure(WireError(status: .memory, message:
                    "SET_MEM_TABLE regions \(lo) \(span(lo)) and \(hi) \(span(hi)) overlap; guest RAM regions must be disjoint (PROTOCOL.md §1.6)"))
            }
        }
        return .success(.setMemTable(regions))
    }

    private static func decodeRootTable(_ r: LittleEndianReader) -> Result<EventRequest, WireError> {
        if let error = expectLength(r, .setRootTable, 8, "rtaddr u64") { return .failure(error) }
        let rtaddr = r.u64(0)
        let low = rtaddr & 0xfff
        // Bits 11:10 are RTADDR_REG.TTM; 01 is scalable mode (VT-d spec 11.4.5).
        if low & 0xc00 == 0x400 {
            return .failure(.malformed(
                "SET_ROOT_TABLE rtaddr \(hex(rtaddr)) selects scalable mode (TTM = 01, bit 10), which is not supported; only legacy-mode root tables are: configure the guest IOMMU without scalable mode (e.g. QEMU intel-iommu x-scalable-mode=off) (PROTOCOL.md §1.6)"))
        }
        guard low == 0 else {
            return .failure(.malformed(
                "SET_ROOT_TABLE rtaddr \(hex(rtaddr)) has bits 11:0 = \(hex(low)); they must be 0 for a legacy-mode, 4 KiB-aligned root table. Send RTADDR_REG as the guest wrote it, with TTM = 00 (PROTOCOL.md §1.6)"))
        }
        return .success(.setRootTable(rtaddr))
    }

    private static func decodeTranslation(_ r: LittleEndianReader) -> Result<EventRequest, WireError> {
        if let error = expectLength(r, .setTranslation, 8, "enabled u32, reserved u32") { return .failure(error) }
        let enabled = r.u32(0), reserved = r.u32(4)
        guard enabled <= 1 else {
            return .failure(.malformed("SET_TRANSLATION enabled (offset 0) is \(enabled); it must be 1 (GCMD.TE set) or 0 (cleared) (PROTOCOL.md §1.6)"))
        }
        guard reserved == 0 else {
            return .failure(.malformed("SET_TRANSLATION reserved field at offset 4 is \(hex(reserved)); it must be 0 (PROTOCOL.md §1.6)"))
        }
        return .success(.setTranslation(enabled == 1))
    }

    private static func decodeInvalidate(_ r: LittleEndianReader) -> Result<EventRequest, WireError> {
        let count: Int
        switch decodeListPrefix(r, .invalidate, range: EventLimits.invalidations,
                                elementSize: InvalidationWords.wireSize, element: "descriptor") {
        case .success(let n): count = n
        case .failure(let error): return .failure(error)
        }
        var words: [InvalidationWords] = []
        words.reserveCapacity(count)
        for i in 0 ..< count {
            let at = 8 + InvalidationWords.wireSize * i
            words.append(InvalidationWords(low: r.u64(at), high: r.u64(at + 8)))
        }
        return .success(.invalidate(words))
    }

    private static func decodeNotify(_ r: LittleEndianReader) -> Result<EventRequest, WireError> {
        let count: Int
        switch decodeListPrefix(r, .notify, range: EventLimits.notifierEntries,
                                elementSize: NotifierEntry.wireSize, element: "entry") {
        case .success(let n): count = n
        case .failure(let error): return .failure(error)
        }
        var entries: [NotifierEntry] = []
        entries.reserveCapacity(count)
        for i in 0 ..< count {
            let at = 8 + NotifierEntry.wireSize * i
            func refuse(_ why: String) -> Result<EventRequest, WireError> {
                .failure(.malformed("NOTIFY entry \(i) (payload offset \(at)): \(why) (PROTOCOL.md §1.6)"))
            }
            let bits = r.u8(at + 26)
            guard let permission = DMAPermission(exactly: bits) else {
                return refuse("permission is \(bits); it must be 0 (unmap), 1 (read), 2 (write) or 3 (read/write)")
            }
            let entry = NotifierEntry(iova: r.u64(at), translatedAddress: r.u64(at + 8), addressMask: r.u64(at + 16),
                                      sourceID: r.u16(at + 24), permission: permission)
            // 5 reserved bytes at 35…39 of the entry (offsets 27…31 from its start).
            for k in 27 ..< 32 where r.u8(at + k) != 0 {
                return refuse("reserved byte at entry offset \(k) is \(hex(r.u8(at + k))); bytes 27 to 31 of an entry must be 0")
            }
            // address_mask + 1 must be a power of two ≥ 4 KiB: the mask is
            // 2^k − 1 with k ≥ 12. The all-ones mask (2^64 bytes) also passes.
            let mask = entry.addressMask
            guard mask & (mask &+ 1) == 0, mask >= EventLimits.pageSize - 1 else {
                return refuse("address_mask \(hex(mask)) is not size − 1 for a power-of-two size of at least 4 KiB (e.g. 0xfff, 0x1fffff)")
            }
            guard entry.iova & mask == 0 else {
                return refuse("iova \(hex(entry.iova)) is not aligned to address_mask + 1 (mask \(hex(mask)))")
            }
            guard entry.translatedAddress & mask == 0 else {
                return refuse("translated_addr \(hex(entry.translatedAddress)) is not aligned to address_mask + 1 (mask \(hex(mask)))")
            }
            entries.append(entry)
        }
        return .success(.notify(entries))
    }
}
