import Glibc
import Wire

/// What `vtdbridge-sim vfio-user-stub` answers: a vfio-user device that
/// looks like edu to QEMU's `vfio-user-pci` and does nothing else. DMA_MAP
/// and DMA_UNMAP are answered at once, with no kernel call, so a guest's
/// invalidation timed against it is QEMU's own cost, the floor under the
/// daemon's figure (make bench).
///
/// Enough for QEMU 11.1 to realize the device and for the qtest guest to
/// enumerate it (the messages QEMU sends at realize are in the shared
/// reference, messages.jsonl):
/// - DEVICE_GET_INFO: a PCI device with reset, 9 regions and 5 interrupt
///   indexes, what Linux's vfio-pci reports (VFIO_PCI_NUM_REGIONS, _IRQS);
/// - region 0 (BAR0): 1 MiB, read/write, not mappable, so QEMU traps every
///   access and sends REGION_READ/WRITE; it holds edu's identification
///   register (0x00) and its liveness register (0x04, reads back the bitwise
///   inverse of what was written: QEMU's docs/specs/edu.rst), the rest of
///   its first 4 KiB is plain memory and beyond that reads as zero;
/// - region 7 (config space): 256 bytes from an array that takes writes;
/// - every other region index below 9: size 0 (absent);
/// - interrupts: INTx (one, maskable), error and request (one each),
///   MSI and MSI-X (none); SET_IRQS is accepted and its eventfds closed;
/// - DEVICE_RESET: config space back to its power-on bytes.
struct VFIOUserStubDevice {
    static let regionCount: UInt32 = 9
    static let irqCount: UInt32 = 5
    static let bar0Index: UInt32 = 0
    static let configIndex: UInt32 = 7
    static let bar0Size: UInt64 = 1 << 20
    static let configSize = 256
    /// Bytes of BAR0 that hold registers; the rest of the BAR reads as 0.
    static let registerBytes = 4096
    /// edu's identification register: version 1.0 and 0xed.
    static let identification: UInt32 = 0x0100_00ed
    static let livenessOffset = 4

    /// What the server has seen, for its log and the benchmark's check that
    /// the traffic really went through it.
    struct Counters: CustomStringConvertible {
        var messages = 0
        var dmaMaps = 0
        var dmaUnmaps = 0
        var refused = 0
        var fdsClosed = 0
        var description: String {
            "messages=\(messages) dma-maps=\(dmaMaps) dma-unmaps=\(dmaUnmaps) refused=\(refused) fds-closed=\(fdsClosed)"
        }
    }

    private(set) var config: [UInt8]
    private var registers: [UInt8]
    private(set) var counters = Counters()

    init() {
        config = Self.powerOnConfig
        registers = [UInt8](repeating: 0, count: Self.registerBytes)
        store(Self.identification, at: 0, in: &registers)
    }

    /// edu's type 0 header (PCI Local Bus 3.0, 6.1), as QEMU's edu sets it:
    /// vendor 1234, device 11e8, revision 0x10, class code 0x00ff ("other":
    /// subclass 0xff at 0x0a, base class 0 at 0x0b), QEMU's default
    /// subsystem 1af4:1100, interrupt pin A. Status has no capability list,
    /// so QEMU looks for no capabilities. BAR0 reads as a 32-bit memory BAR
    /// at 0 (QEMU emulates the BAR registers itself from the region info).
    static var powerOnConfig: [UInt8] {
        var c = [UInt8](repeating: 0, count: configSize)
        c[0x00] = 0x34; c[0x01] = 0x12
        c[0x02] = 0xe8; c[0x03] = 0x11
        c[0x08] = 0x10
        c[0x0a] = 0xff; c[0x0b] = 0x00
        c[0x2c] = 0xf4; c[0x2d] = 0x1a
        c[0x2e] = 0x00; c[0x2f] = 0x11
        c[0x3d] = 0x01
        return c
    }

    /// The reply to one whole message (nil for a posted command), after
    /// which the caller closes `fds`: nothing here keeps a descriptor.
    mutating func answer(_ bytes: [UInt8], fds: Int) -> [UInt8]? {
        counters.messages += 1
        counters.fdsClosed += fds
        let command: VFIOUserCommandMessage
        switch VFIOUserCodec.decodeCommand(bytes) {
        case let .success(decoded): command = decoded
        case let .failure(error):
            counters.refused += 1
            return VFIOUserCodec.encodeErrorReply(for: error)
        }
        let header = command.header
        let result = reply(to: command.request)
        if header.noReply { return nil }
        switch result {
        case let .success(reply):
            return VFIOUserCodec.encodeReply(reply, messageID: header.messageID)
        case let .failure(errno):
            counters.refused += 1
            return VFIOUserCodec.encodeErrorReply(messageID: header.messageID, command: header.command, errno: UInt32(errno.code))
        }
    }

    struct Errno: Error { var code: Int32 }

    private mutating func reply(to request: VFIOUserRequest) -> Result<VFIOUserReply, Errno> {
        switch request {
        case let .version(version):
            guard version.major == 0 else { return .failure(Errno(code: ENOTSUP)) }
            // QEMU refuses a server's max_dma_maps above its own.
            let maps = min(65535, version.capabilities?.maxDMAMaps ?? 65535)
            let offer = VFIOUserCapabilities(maxMessageFDs: 16, maxDataTransferSize: UInt32(VFIOUserLimits.defaultMaxDataTransfer),
                                             pageSizes: 4096, maxDMAMaps: maps)
            return .success(.version(VFIOUserVersion(major: 0, minor: 0, capabilities: offer)))
        case .dmaMap:
            counters.dmaMaps += 1
            return .success(.dmaMap)
        case let .dmaUnmap(unmap):
            counters.dmaUnmaps += 1
            return .success(.dmaUnmap(unmap))
        case .deviceGetInfo:
            return .success(.deviceGetInfo(VFIOUserDeviceInfo(flags: VFIOUserDeviceInfo.flagReset | VFIOUserDeviceInfo.flagPCI,
                                                              regionCount: Self.regionCount, irqCount: Self.irqCount)))
        case let .deviceGetRegionInfo(asked):
            guard asked.index < Self.regionCount else { return .failure(Errno(code: EINVAL)) }
            let readWrite = VFIOUserRegionInfo.flagRead | VFIOUserRegionInfo.flagWrite
            let (flags, size): (UInt32, UInt64) = switch asked.index {
            case Self.bar0Index: (readWrite, Self.bar0Size)
            case Self.configIndex: (readWrite, UInt64(Self.configSize))
            default: (0, 0)
            }
            return .success(.deviceGetRegionInfo(VFIOUserRegionInfo(flags: flags, index: asked.index, size: size), capabilities: []))
        case let .deviceGetIRQInfo(asked):
            let eventfd = VFIOUserIRQInfo.flagEventFD
            let (flags, count): (UInt32, UInt32) = switch asked.index {
            case 0: (eventfd | VFIOUserIRQInfo.flagMaskable | VFIOUserIRQInfo.flagAutomasked, 1)
            case 1, 2: (eventfd, 0)
            case 3, 4: (eventfd, 1)
            default: (0, 0)
            }
            guard asked.index < Self.irqCount else { return .failure(Errno(code: EINVAL)) }
            return .success(.deviceGetIRQInfo(VFIOUserIRQInfo(flags: flags, index: asked.index, count: count)))
        case .deviceSetIRQs:
            return .success(.deviceSetIRQs)
        case let .regionRead(access):
            guard let data = read(access) else { return .failure(Errno(code: EINVAL)) }
            return .success(.regionRead(access, data: data))
        case let .regionWrite(access, data):
            guard write(access, data) else { return .failure(Errno(code: EINVAL)) }
            return .success(.regionWrite(access))
        case .deviceReset:
            config = Self.powerOnConfig
            return .success(.deviceReset)
        }
    }

    private func read(_ access: VFIOUserRegionAccess) -> [UInt8]? {
        let start = Int(clamping: access.offset), end = start + Int(access.count)
        switch access.region {
        case Self.configIndex:
            guard access.offset <= UInt64(Self.configSize), end <= Self.configSize else { return nil }
            return Array(config[start..<end])
        case Self.bar0Index:
            guard access.offset <= Self.bar0Size, end <= Int(Self.bar0Size) else { return nil }
            return (start..<end).map { $0 < Self.registerBytes ? registers[$0] : 0 }
        default:
            return nil
        }
    }

    private mutating func write(_ access: VFIOUserRegionAccess, _ data: [UInt8]) -> Bool {
        let start = Int(clamping: access.offset), end = start + data.count
        switch access.region {
        case Self.configIndex:
            guard access.offset <= UInt64(Self.configSize), end <= Self.configSize else { return false }
            config.replaceSubrange(start..<end, with: data)
            return true
        case Self.bar0Index:
            guard access.offset <= Self.bar0Size, end <= Int(Self.bar0Size) else { return false }
            if start == Self.livenessOffset && data.count == 4 {
                store(~(UInt32(data[0]) | UInt32(data[1]) << 8 | UInt32(data[2]) << 16 | UInt32(data[3]) << 24),
                      at: Self.livenessOffset, in: &registers)
            } else if start < Self.registerBytes {
                // The identification register is read-only.
                for (i, byte) in data.enumerated() where start + i >= 4 && start + i < Self.registerBytes {
                    registers[start + i] = byte
                }
            }
            return true
        default:
            return false
        }
    }

    private func store(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
}
