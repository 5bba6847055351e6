import Bridge
import VTd
import VTdGuest
import Wire

// MARK: - vfio-user seeds

enum VFIOUserSeeds {
    /// Config byte 1: the default limits; 0x20: small ones (a transfer of
    /// 64 bytes, VERSION data of 128), see `VFIOUserFuzzer.limits`. Chunking
    /// byte: read sizes (bits 0-2: 0 whole, 1 bytewise, 2-7 pseudo-random)
    /// and descriptors on reads (bits 3-4: never, every, every 2nd, every 4th).
    static func input(config: UInt8 = 1, chunks: UInt8 = 0, _ stream: [UInt8]) -> [UInt8] { [config, chunks] + stream }

    static func header(id: UInt16, command: UInt16, size: Int, flags: UInt32 = 0, error: UInt32 = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        VFIOUserHeader(messageID: id, command: command, messageSize: UInt32(truncatingIfNeeded: size), flags: flags, error: error).encode(into: &bytes)
        return bytes
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0 ..< 4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    /// A command whose header (size included) is written by hand around `payload`.
    static func raw(id: UInt16 = 1, command: UInt16, flags: UInt32 = 0, error: UInt32 = 0, _ payload: [UInt8]) -> [UInt8] {
        header(id: id, command: command, size: VFIOUserHeader.size + payload.count, flags: flags, error: error) + payload
    }

    /// The capabilities text QEMU 11.1.3 sent, byte for byte (messages.jsonl id 0).
    static let qemuVersionJSON = #"{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}"#

    /// QEMU's VERSION 0.0: 214 bytes.
    static let qemuVersion = raw(id: 0, command: 1, [0, 0, 0, 0] + Array(qemuVersionJSON.utf8) + [0])

    /// Every other message QEMU 11.1.3 sent to a stub server behind a
    /// caching-mode intel-iommu, in order, by message ID
    /// (/work/shared/reference/qemu-vfio-user/messages.jsonl): realize (1-21),
    /// machine reset (22-33), the guest enabling translation and mapping,
    /// unmapping and remapping pages (34-67), translation off (68-90, up to
    /// 2^64) and back to guest RAM (91-95). ID 46 is a posted write (no reply).
    static let qemuSession: [(id: UInt16, request: VFIOUserRequest)] = [
        (1, .dmaMap(.init(flags: 3, offset: 0x0, iova: 0x0, size: 0x1000_0000))),
        (2, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xfffc_0000, size: 0x4_0000))),
        (3, .deviceGetInfo(.init())),
        (4, .deviceGetRegionInfo(.init(index: 0))),
        (5, .deviceGetRegionInfo(.init(index: 1))),
        (6, .deviceGetRegionInfo(.init(index: 2))),
        (7, .deviceGetRegionInfo(.init(index: 3))),
        (8, .deviceGetRegionInfo(.init(index: 4))),
        (9, .deviceGetRegionInfo(.init(index: 5))),
        (10, .deviceGetRegionInfo(.init(index: 7))),
        (11, .deviceGetIRQInfo(.init(index: 3))),
        (12, .regionRead(.init(offset: 0x0, region: 7, count: 256))),
        (13, .regionRead(.init(offset: 0x30, region: 7, count: 4))),
        (14, .regionWrite(.init(offset: 0x30, region: 7, count: 4), data: [0x00, 0xf8, 0xff, 0xff])),
        (15, .regionRead(.init(offset: 0x30, region: 7, count: 4))),
        (16, .regionWrite(.init(offset: 0x30, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (17, .regionRead(.init(offset: 0x10, region: 7, count: 4))),
        (18, .regionRead(.init(offset: 0x3d, region: 7, count: 1))),
        (19, .regionRead(.init(offset: 0x3d, region: 7, count: 1))),
        (20, .deviceSetIRQs(.init(flags: 0x24, index: 0, start: 0, count: 1))),
        (21, .deviceSetIRQs(.init(flags: 0x24, index: 3, start: 0, count: 1))),
        (22, .deviceSetIRQs(.init(flags: 0x21, index: 0, start: 0, count: 0))),
        (23, .regionRead(.init(offset: 0x4, region: 7, count: 2))),
        (24, .regionWrite(.init(offset: 0x4, region: 7, count: 2), data: [0x00, 0x00])),
        (25, .deviceReset),
        (26, .regionRead(.init(offset: 0x3d, region: 7, count: 1))),
        (27, .deviceSetIRQs(.init(flags: 0x24, index: 0, start: 0, count: 1))),
        (28, .regionWrite(.init(offset: 0x10, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (29, .regionWrite(.init(offset: 0x14, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (30, .regionWrite(.init(offset: 0x18, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (31, .regionWrite(.init(offset: 0x1c, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (32, .regionWrite(.init(offset: 0x20, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (33, .regionWrite(.init(offset: 0x24, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0x00])),
        (34, .dmaUnmap(.init(iova: 0x0, size: 0x1000_0000))),
        (35, .dmaMap(.init(flags: 3, offset: 0x0, iova: 0x0, size: 0xc_0000))),
        (36, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xc_0000, size: 0x2_0000))),
        (37, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xe_0000, size: 0x2_0000))),
        (38, .dmaMap(.init(flags: 3, offset: 0x10_0000, iova: 0x10_0000, size: 0xff0_0000))),
        (39, .regionRead(.init(offset: 0x0, region: 7, count: 4))),
        (40, .regionRead(.init(offset: 0x8, region: 7, count: 4))),
        (41, .regionRead(.init(offset: 0x3c, region: 7, count: 4))),
        (42, .regionWrite(.init(offset: 0x10, region: 7, count: 4), data: [0x00, 0x00, 0x00, 0xfe])),
        (43, .regionWrite(.init(offset: 0x4, region: 7, count: 4), data: [0x06, 0x00, 0x00, 0x00])),
        (44, .regionRead(.init(offset: 0x4, region: 7, count: 4))),
        (45, .regionRead(.init(offset: 0x0, region: 0, count: 4))),
        (46, .regionWrite(.init(offset: 0x4, region: 0, count: 4), data: [0xef, 0xbe, 0xad, 0xde])),
        (47, .regionRead(.init(offset: 0x4, region: 0, count: 4))),
        (48, .dmaUnmap(.init(iova: 0x0, size: 0xc_0000))),
        (49, .dmaUnmap(.init(iova: 0xc_0000, size: 0x2_0000))),
        (50, .dmaUnmap(.init(iova: 0xe_0000, size: 0x2_0000))),
        (51, .dmaUnmap(.init(iova: 0x10_0000, size: 0xff0_0000))),
        (52, .dmaUnmap(.init(iova: 0xfffc_0000, size: 0x4_0000))),
        (53, .dmaMap(.init(flags: 3, offset: 0x20_0000, iova: 0x1000_0000, size: 0x1000))),
        (54, .dmaMap(.init(flags: 1, offset: 0x20_1000, iova: 0x1000_1000, size: 0x1000))),
        (55, .dmaMap(.init(flags: 3, offset: 0x40_0000, iova: 0x4000_0000, size: 0x20_0000))),
        (56, .dmaMap(.init(flags: 3, offset: 0x30_0000, iova: 0x1000_2000, size: 0x1000))),
        (57, .dmaUnmap(.init(iova: 0x1000_1000, size: 0x1000))),
        (58, .dmaUnmap(.init(iova: 0x1000_0000, size: 0x1000))),
        (59, .dmaMap(.init(flags: 3, offset: 0x20_2000, iova: 0x1000_0000, size: 0x1000))),
        (60, .dmaMap(.init(flags: 3, offset: 0x21_0000, iova: 0x1000_8000, size: 0x1000))),
        (61, .dmaMap(.init(flags: 3, offset: 0x21_1000, iova: 0x1000_9000, size: 0x1000))),
        (62, .dmaMap(.init(flags: 3, offset: 0x21_2000, iova: 0x1000_a000, size: 0x1000))),
        (63, .dmaMap(.init(flags: 3, offset: 0x21_3000, iova: 0x1000_b000, size: 0x1000))),
        (64, .dmaMap(.init(flags: 3, offset: 0x21_4000, iova: 0x1000_c000, size: 0x1000))),
        (65, .dmaMap(.init(flags: 3, offset: 0x21_5000, iova: 0x1000_d000, size: 0x1000))),
        (66, .dmaMap(.init(flags: 3, offset: 0x21_6000, iova: 0x1000_e000, size: 0x1000))),
        (67, .dmaMap(.init(flags: 3, offset: 0x21_7000, iova: 0x1000_f000, size: 0x1000))),
        (68, .dmaUnmap(.init(iova: 0x0, size: 0x4000_0000))),
        (69, .dmaUnmap(.init(iova: 0x4000_0000, size: 0x4000_0000))),
        (70, .dmaUnmap(.init(iova: 0xfef0_0000, size: 0x10_0000))),
        (71, .dmaUnmap(.init(iova: 0xff00_0000, size: 0x100_0000))),
        (72, .dmaUnmap(.init(iova: 0x1_0000_0000, size: 0x1_0000_0000))),
        (73, .dmaUnmap(.init(iova: 0x2_0000_0000, size: 0x2_0000_0000))),
        (74, .dmaUnmap(.init(iova: 0x4_0000_0000, size: 0x4_0000_0000))),
        (75, .dmaUnmap(.init(iova: 0x8_0000_0000, size: 0x8_0000_0000))),
        (76, .dmaUnmap(.init(iova: 0x10_0000_0000, size: 0x10_0000_0000))),
        (77, .dmaUnmap(.init(iova: 0x20_0000_0000, size: 0x20_0000_0000))),
        (78, .dmaUnmap(.init(iova: 0x40_0000_0000, size: 0x40_0000_0000))),
        (79, .dmaUnmap(.init(iova: 0x0, size: 0x8000_0000))),
        (80, .dmaUnmap(.init(iova: 0x8000_0000, size: 0x4000_0000))),
        (81, .dmaUnmap(.init(iova: 0xc000_0000, size: 0x2000_0000))),
        (82, .dmaUnmap(.init(iova: 0xe000_0000, size: 0x1000_0000))),
        (83, .dmaUnmap(.init(iova: 0xf000_0000, size: 0x800_0000))),
        (84, .dmaUnmap(.init(iova: 0xf800_0000, size: 0x400_0000))),
        (85, .dmaUnmap(.init(iova: 0xfc00_0000, size: 0x200_0000))),
        (86, .dmaUnmap(.init(iova: 0xfe00_0000, size: 0x80_0000))),
        (87, .dmaUnmap(.init(iova: 0xfe80_0000, size: 0x40_0000))),
        (88, .dmaUnmap(.init(iova: 0xfec0_0000, size: 0x20_0000))),
        (89, .dmaUnmap(.init(iova: 0x0, size: 0xfee0_0000))),
        (90, .dmaUnmap(.init(iova: 0xfef0_0000, size: 0xffff_ffff_0110_0000))),
        (91, .dmaMap(.init(flags: 3, offset: 0x0, iova: 0x0, size: 0xc_0000))),
        (92, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xc_0000, size: 0x2_0000))),
        (93, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xe_0000, size: 0x2_0000))),
        (94, .dmaMap(.init(flags: 3, offset: 0x10_0000, iova: 0x10_0000, size: 0xff0_0000))),
        (95, .dmaMap(.init(flags: 1, offset: 0x0, iova: 0xfffc_0000, size: 0x4_0000))),
    ]

    static func qemu(_ ids: ClosedRange<UInt16>) -> [UInt8] {
        var stream = ids.contains(0) ? qemuVersion : []
        for (id, request) in qemuSession where ids.contains(id) {
            stream += VFIOUserCodec.encodeCommand(request, messageID: id, noReply: id == 46)
        }
        return stream
    }

    static var all: [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        // One message of each kind QEMU sent, alone.
        let singles: [(String, UInt16)] = [
            ("version", 0), ("dma-map-guest-ram-with-fd", 1), ("dma-map-bios-without-fd", 2), ("device-get-info", 3),
            ("get-region-info-bar0", 4), ("get-region-info-config", 10), ("get-irq-info-error", 11),
            ("region-read-config-256", 12), ("region-write-bar-sizing", 14), ("region-write-2-bytes", 24),
            ("set-irqs-eventfd-trigger-0x24", 20), ("set-irqs-none-trigger-0x21", 22), ("device-reset", 25),
            ("dma-unmap-guest-ram", 34), ("region-write-posted", 46), ("dma-map-2m-leaf", 55),
            ("dma-unmap-2-39", 78), ("dma-unmap-to-2-64", 90),
        ]
        // QEMU sent an fd with each map of guest RAM and each eventfd SET_IRQS:
        // a descriptor rides on the one read (chunking 0x08).
        let withFD: Set<UInt16> = [1, 20, 55]
        for (name, id) in singles { seeds.append(("qemu-\(name)", input(chunks: withFD.contains(id) ? 0x08 : 0, qemu(id ... id)))) }
        // The real-device run (README of the observations): the BAR0 window
        // mapped without an fd, and INTx unmasked after each trapped access.
        seeds.append(("qemu-dma-map-bar0-without-fd", input(VFIOUserCodec.encodeCommand(
            .dmaMap(VFIOUserDMAMap(flags: 3, offset: 0, iova: 0xfe00_0000, size: 0x10_0000)), messageID: 96))))
        seeds.append(("qemu-set-irqs-none-unmask-0x11", input(chunks: 0x02, VFIOUserCodec.encodeCommand(
            .deviceSetIRQs(VFIOUserIRQSet(flags: 0x11, index: 0, start: 0, count: 1)), messageID: 97))))
        // QEMU's sessions, phase by phase (each under libFuzzer's 4096-byte max_len).
        // QEMU's sessions, phase by phase (each under libFuzzer's 4096-byte
        // max_len), read whole, byte by byte, and in pseudo-random pieces
        // with descriptors on every read, every 2nd or every 4th.
        seeds.append(("session-qemu-realize", input(chunks: 0x00, qemu(0 ... 21))))
        seeds.append(("session-qemu-realize-random-fds", input(chunks: 0x0e, qemu(0 ... 21))))
        seeds.append(("session-qemu-reset-bytewise", input(chunks: 0x01, qemu(22 ... 33))))
        seeds.append(("session-qemu-translation-on-random-fds", input(chunks: 0x14, qemu(34 ... 67))))
        seeds.append(("session-qemu-translation-off-random-fds", input(chunks: 0x1d, qemu(68 ... 95))))
        // QEMU's realize under small limits: its VERSION data (194 bytes) is
        // above 128, and REGION_READ of 256 bytes above 64.
        seeds.append(("session-qemu-small-limits", input(config: 0x20, chunks: 0x0b, qemu(1 ... 21) + qemu(0 ... 0))))

        // The codec tests' golden commands that QEMU did not send.
        let serializerJSON = #"{"capabilities":{"max_data_xfer_size":1048576,"max_dma_maps":65535,"max_msg_fds":1,"pgsizes":4096,"write_multiple":false}}"#
        seeds.append(("golden-version-serializer-order", input(raw(id: 5, command: 1, [0, 0, 3, 0] + Array(serializerJSON.utf8) + [0]))))
        seeds.append(("golden-version-without-data", input(raw(id: 1, command: 1, [1, 0, 2, 0]))))
        seeds.append(("golden-set-irqs-bool-data", input(VFIOUserCodec.encodeCommand(
            .deviceSetIRQs(VFIOUserIRQSet(flags: 0x0a, index: 2, start: 2, count: 2, boolData: [1, 0])), messageID: 21))))
        seeds.append(("golden-device-reset-no-reply", input(VFIOUserCodec.encodeCommand(.deviceReset, messageID: 9, noReply: true))))

        // Replies, as a client decodes them.
        let replies: [(UInt16, VFIOUserReply)] = [
            (0, .version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities()))),
            (1, .dmaMap), (20, .deviceSetIRQs), (25, .deviceReset),
            (34, .dmaUnmap(VFIOUserDMAUnmap(iova: 0x1000, size: 0x1000))),
            (3, .deviceGetInfo(VFIOUserDeviceInfo(flags: VFIOUserDeviceInfo.flagPCI, regionCount: 9, irqCount: 5))),
            (4, .deviceGetRegionInfo(VFIOUserRegionInfo(flags: 7, index: 0, size: 0x10_0000), capabilities: [])),
            (4, .deviceGetRegionInfo(VFIOUserRegionInfo(argsz: 48, flags: 0x0f, index: 2, capabilityOffset: 32, size: 0x4000, offset: 0x2_0000_0000),
                                     capabilities: [1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])),
            (11, .deviceGetIRQInfo(VFIOUserIRQInfo(flags: 7, index: 0, count: 1))),
            (12, .regionRead(VFIOUserRegionAccess(offset: 0, region: 7, count: 8), data: [0x34, 0x12, 0xe8, 0x11, 0, 0, 0, 0])),
            (14, .regionWrite(VFIOUserRegionAccess(offset: 0x30, region: 7, count: 4))),
        ]
        let replyStream = replies.flatMap { VFIOUserCodec.encodeReply($0.1, messageID: $0.0) }
            + VFIOUserCodec.encodeErrorReply(messageID: 11, command: 7, errno: 22)
            + VFIOUserCodec.encodeErrorReply(messageID: 12, command: 14, errno: 95)
        seeds.append(("replies", input(chunks: 0x03, replyStream)))

        // Refusals (the codec tests' cases), each followed by a good message
        // so that the stream goes on past it.
        let map = le32(32) + le32(3) + le64(0) + le64(0) + le64(0x1000_0000)
        let reset = VFIOUserCodec.encodeCommand(.deviceReset, messageID: 99)
        let refused: [(String, [UInt8])] = [
            ("short-map", raw(command: 2, Array(map.dropLast(8)))),
            ("map-argsz-24", raw(command: 2, le32(24) + map.dropFirst(4))),
            ("unmap-argsz-16", raw(id: 2, command: 3, le32(16) + le32(0) + le64(0) + le64(0x1000))),
            ("get-info-argsz-8", raw(id: 3, command: 4, le32(8) + [UInt8](repeating: 0, count: 12))),
            ("region-info-argsz-31", raw(id: 4, command: 5, le32(31) + [UInt8](repeating: 0, count: 28))),
            ("irq-info-argsz-0", raw(id: 5, command: 7, le32(0) + le32(0) + le32(3) + le32(0))),
            ("set-irqs-argsz-24", raw(id: 6, command: 8, le32(24) + le32(0x24) + le32(0) + le32(0) + le32(1))),
            ("set-irqs-two-actions", raw(id: 6, command: 8, le32(20) + le32(0x34) + le32(0) + le32(0) + le32(1))),
            ("set-irqs-bool-short", raw(id: 6, command: 8, le32(22) + le32(0x22) + le32(0) + le32(0) + le32(3) + [1, 1])),
            ("set-irqs-eventfd-with-data", raw(id: 6, command: 8, le32(21) + le32(0x24) + le32(0) + le32(0) + le32(1) + [1])),
            ("unknown-14", raw(id: 7, command: 14, [])),
            ("unknown-ffff", raw(id: 7, command: 0xffff, [])),
            ("unsupported-dma-read", raw(id: 7, command: 11, [])),
            ("unsupported-region-write-multi", raw(id: 7, command: 15, [])),
            ("write-count-8-with-4-bytes", raw(id: 2, command: 10, le64(0) + le32(0) + le32(8) + [1, 2, 3, 4])),
            ("read-with-data", raw(id: 2, command: 9, le64(0) + le32(0) + le32(4) + [1, 2, 3, 4])),
            ("flags-undefined-0x40", raw(command: 13, flags: 0x40, [])),
            ("flags-type-2", raw(command: 13, flags: 0x2, [])),
            ("reply-on-command-path", raw(command: 13, flags: 0x1, [])),
            ("error-flag-on-command", raw(command: 13, flags: 0x20, [])),
            ("reset-with-payload-no-reply", raw(command: 13, flags: 0x10, [0])),
            ("version-short", raw(command: 1, [0, 0])),
            ("version-no-nul", raw(command: 1, [0, 0, 0, 0] + Array("{}".utf8))),
            ("version-not-json", raw(command: 1, [0, 0, 0, 0] + Array("{caps}".utf8) + [0])),
            ("version-bad-member", raw(command: 1, [0, 0, 0, 0] + Array(#"{"capabilities":{"max_msg_fds":-1,"migration":{"pgsize":4096}}}"#.utf8) + [0])),
        ]
        for (name, bytes) in refused { seeds.append(("refused-\(name)", input(bytes + reset))) }
        // Oversized transfers under small limits (0x20: 64 bytes).
        seeds.append(("refused-read-above-limit", input(config: 0x20, raw(command: 9, le64(0) + le32(0) + le32(65)) + reset)))
        seeds.append(("refused-write-above-limit", input(config: 0x20, raw(command: 10, le64(0) + le32(0) + le32(65) + [1, 2, 3, 4]) + reset)))
        // Framing: a size below the header, a size above the limit (both end
        // the stream), a message cut short at the end, a few stray bytes.
        seeds.append(("framing-size-15", input(header(id: 1, command: 13, size: 15) + reset)))
        seeds.append(("framing-size-above-limit", input(config: 0x20, chunks: 0x19, header(id: 3, command: 10, size: 16 + 16 + 65) + le64(0) + le32(0) + le32(65))))
        seeds.append(("framing-size-4g", input(header(id: 3, command: 10, size: 0xffff_ffff) + reset)))
        seeds.append(("framing-cut-short", input(chunks: 0x0c, reset + header(id: 1, command: 2, size: 48) + map.dropLast(8))))
        seeds.append(("framing-stray-bytes", input(reset + [1, 0, 2])))
        return seeds
    }
}
