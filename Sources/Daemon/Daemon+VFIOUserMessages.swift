import Bridge
import Glibc
import Logging
import Posix
import VFIO
import VTd
import Wire

/// One vfio-user message, handled to the end before its reply is queued:
/// a DMA_MAP's reply follows the kernel's MAP_DMA, as an invalidation's ack
/// does on the event channel. Device messages go to the real VFIO device.
/// Every refusal is logged with what was wrong and answered with an errno;
/// the connection stays up, since QEMU only reports an error reply.
extension Daemon {
    typealias VFIOUserOutcome = (reply: [UInt8]?, fds: [FileDescriptor])

    func handleVFIOUser(_ message: VFIOUserStreamDecoder<FileDescriptor>.Message, in session: VFIOUserSession) -> VFIOUserOutcome {
        let server = session.server
        server.counters.messages += 1
        metrics.vfioUserMessages.increment()
        let command: VFIOUserCommandMessage
        switch VFIOUserCodec.decodeCommand(message.bytes, limits: vfioUserLimits) {
        case let .failure(error):
            return refuseVFIOUser(session, error.header, errno: Int32(error.errno), error.description)
        case let .success(decoded):
            command = decoded
        }
        let header = command.header
        // Descriptors travel with DMA_MAP (one, the memory) and SET_IRQS
        // with DATA_EVENTFD (one per interrupt) only.
        let fdsAllowed: Int = switch command.request {
        case .dmaMap: 1
        case let .deviceSetIRQs(set) where set.flags & VFIOUserIRQSet.dataEventFD != 0: Int(min(set.count, 1024))
        default: 0
        }
        if message.fds.count > fdsAllowed {
            return refuseVFIOUser(session, header, errno: EINVAL,
                                  "\(header): came with \(message.fds.count) file descriptor(s); \(command.request.command.name) takes \(fdsAllowed == 0 ? "none" : "at most \(fdsAllowed)")")
        }
        if !session.negotiated, command.request.command != .version {
            return refuseVFIOUser(session, header, errno: EINVAL, "\(header): VERSION must be the first message of a session (vfio-user.rst, \"Version\")")
        }
        let result: Result<VFIOUserReply, VFIOUserRefusal>
        var replyFDs: [FileDescriptor] = []
        switch command.request {
        case let .version(version):
            result = negotiateVFIOUser(version, session)
        case let .dmaMap(map):
            result = vfioUserDMAMap(map, fd: message.fds.first, header: header, session)
        case let .dmaUnmap(unmap):
            result = vfioUserDMAUnmap(unmap, header: header, session)
        default:
            guard let device = devices[server.guest]?.host.vfioDevice else {
                result = .failure(VFIOUserRefusal(errno: ENODEV, "\(header): device \(server.guest) has no VFIO device to proxy"))
                break
            }
            let proxy = VFIOUserDeviceProxy(device: device, server: server, logger: logger)
            switch proxy.handle(command.request, header: header, fds: message.fds, session: session) {
            case let .success((reply, fds)):
                result = .success(reply)
                replyFDs = fds
            case let .failure(refusal):
                result = .failure(refusal)
            }
        }
        switch result {
        case let .success(reply):
            if header.noReply { return (nil, []) }
            return (VFIOUserCodec.encodeReply(reply, messageID: header.messageID), replyFDs)
        case let .failure(refusal):
            return refuseVFIOUser(session, header, errno: refusal.errno, refusal.message, expected: refusal.expected)
        }
    }

    /// Logs a refusal and builds its error reply (none for a posted write).
    func refuseVFIOUser(_ session: VFIOUserSession, _ header: VFIOUserHeader?, errno: Int32, _ message: String,
                        expected: Bool = false) -> VFIOUserOutcome {
        session.server.counters.refused += 1
        metrics.vfioUserRefused.increment()
        // A question QEMU asks of every device and expects to be refused by
        // some (the error IRQ of a conventional PCI device) is not worth a
        // warning at each start.
        logger.log(level: expected ? .debug : .warning, "vfio-user: request refused", metadata: [
            "device": "\(session.server.guest)", "errno": "\(errno) (\(String(cString: strerror(errno))))", "error": "\(message)",
        ])
        guard let header, !header.noReply, !header.isReply else { return (nil, []) }
        return (VFIOUserCodec.encodeErrorReply(messageID: header.messageID, command: header.command, errno: UInt32(errno)), [])
    }

    private func negotiateVFIOUser(_ version: VFIOUserVersion, _ session: VFIOUserSession) -> Result<VFIOUserReply, VFIOUserRefusal> {
        // Major 0 is the only version the spec defines; the minor is the
        // lower of the two (vfio-user.rst, "Version").
        guard version.major == 0 else {
            return .failure(VFIOUserRefusal(errno: ENOTSUP, "VERSION \(version.major).\(version.minor): this server speaks major version 0"))
        }
        session.clientCapabilities = version.capabilities ?? VFIOUserCapabilities()
        session.negotiated = true
        let quota = bridge.spaces[session.server.guest]?.mappingQuota ?? Int(UInt32.max)
        // What we offer: descriptors per message for SET_IRQS (QEMU sends at
        // most its own max_msg_fds), the default transfer size, 4 KiB pages
        // (type1 maps in host pages), no migration and no REGION_WRITE_MULTI,
        // which this server does not handle, and as many DMA regions as the
        // quota allows but no more than the client offered: QEMU 11.1 fails
        // realize ("max_dma_maps too large") when the server's exceeds its own.
        let maps = min(UInt32(clamping: quota), session.clientCapabilities.maxDMAMaps)
        let offer = VFIOUserCapabilities(maxMessageFDs: 16, maxDataTransferSize: UInt32(vfioUserLimits.maxDataTransfer),
                                         pageSizes: 4096, maxDMAMaps: maps, migration: nil, writeMultiple: false)
        return .success(.version(VFIOUserVersion(major: 0, minor: min(version.minor, 0), capabilities: offer)))
    }

    // MARK: DMA

    private func vfioUserDMAMap(_ map: VFIOUserDMAMap, fd: FileDescriptor?, header: VFIOUserHeader,
                                _ session: VFIOUserSession) -> Result<VFIOUserReply, VFIOUserRefusal> {
        let server = session.server
        let range = "[\(hex(map.iova)), \(hex(map.iova &+ map.size)))"
        guard map.flags & ~(VFIOUserDMAMap.readable | VFIOUserDMAMap.writeable) == 0 else {
            return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_MAP flags \(hex(map.flags)) set bits other than READ (0) and WRITE (1)"))
        }
        guard map.size > 0, map.iova & 0xfff == 0, map.size & 0xfff == 0, map.offset & 0xfff == 0 else {
            return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_MAP of \(range) at file offset \(hex(map.offset)): iova, size and offset must be non-zero multiples of the 4 KiB page this server offered (pgsizes)"))
        }
        guard map.iova.addingReportingOverflow(map.size).overflow == false else {
            return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_MAP iova \(hex(map.iova)) + size \(hex(map.size)) wraps past 2^64"))
        }
        var permission: DMAPermission = []
        if map.isReadable { permission.insert(.read) }
        if map.isWriteable { permission.insert(.write) }
        guard !permission.isEmpty else {
            return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_MAP of \(range) grants neither read nor write"))
        }
        guard let fd else {
            // QEMU sends these for ranges it cannot share (BIOS, option ROMs,
            // a BAR's peer-to-peer window). Nothing can be mapped, so the
            // device cannot reach them; QEMU goes on either way, and an
            // error reply at realize would stop it. Counted, as a fault.
            server.counters.mapsWithoutFile += 1
            let report = bridge.clientFault(server.guest, TranslationFault(
                reason: .dmaMapWithoutFile, iova: map.iova, value: map.size,
                detail: "DMA_MAP of \(range) came without a file descriptor: there is no memory to map, so the device cannot reach it"))
            metrics.record(report)
            return .success(.dmaMap)
        }
        let host: UInt64
        do {
            host = try session.memory.resolve(fd, offset: map.offset, size: map.size, writable: permission.contains(.write))
        } catch {
            return .failure(VFIOUserRefusal(errno: error.errno, "\(header): \(error.message)"))
        }
        let started = ContinuousClock.now
        let result = bridge.clientMap(server.guest, ShadowEntry(iova: map.iova, size: map.size, hostAddress: host, permission: permission))
        metrics.batchDuration.recordNanoseconds(started.duration(to: .now).nanosecondCount)
        switch result {
        case let .success(report):
            server.counters.dmaMaps += 1
            metrics.record(report)
            return .success(.dmaMap)
        case let .failure(error):
            metrics.record(error.report)
            return .failure(VFIOUserRefusal(errno: error.errno, "\(header): \(error.message)"))
        }
    }

    private func vfioUserDMAUnmap(_ unmap: VFIOUserDMAUnmap, header: VFIOUserHeader,
                                  _ session: VFIOUserSession) -> Result<VFIOUserReply, VFIOUserRefusal> {
        let server = session.server
        // Linux's VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (bit 0) needs
        // migration, which this server does not offer; UNMAP_FLAG_ALL (bit 1)
        // takes iova 0 and size 0 and means everything.
        let unmapAll: UInt32 = 1 << 1
        guard unmap.flags & ~unmapAll == 0 else {
            return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_UNMAP flags \(hex(unmap.flags)): only UNMAP_ALL (bit 1) is supported; dirty-page tracking needs migration, which this server does not offer"))
        }
        let start: UInt64, end: UInt64
        if unmap.flags & unmapAll != 0 {
            guard unmap.iova == 0, unmap.size == 0 else {
                return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_UNMAP with UNMAP_ALL must give iova 0 and size 0"))
            }
            (start, end) = (0, 0)
        } else {
            let (sum, overflow) = unmap.iova.addingReportingOverflow(unmap.size)
            // Ending exactly at 2^64 is allowed (QEMU's translation-off unmaps do).
            guard unmap.size > 0, !overflow || sum == 0 else {
                return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_UNMAP iova \(hex(unmap.iova)) size \(hex(unmap.size)): the size must be non-zero and the range must end at or below 2^64"))
            }
            guard unmap.iova & 0xfff == 0, unmap.size & 0xfff == 0 else {
                return .failure(VFIOUserRefusal(errno: EINVAL, "\(header): DMA_UNMAP iova \(hex(unmap.iova)) size \(hex(unmap.size)): both must be multiples of 4 KiB"))
            }
            (start, end) = (unmap.iova, sum)
        }
        let started = ContinuousClock.now
        let result = bridge.clientUnmap(server.guest, iova: start, end: end)
        metrics.batchDuration.recordNanoseconds(started.duration(to: .now).nanosecondCount)
        switch result {
        case let .success(done):
            server.counters.dmaUnmaps += 1
            metrics.record(done.report)
            if done.removed + done.straddled == 0 {
                server.counters.emptyUnmaps += 1
                logger.debug("vfio-user: DMA_UNMAP of a range holding no region", metadata: [
                    "device": "\(server.guest)", "iova": "\(hex(unmap.iova))", "size": "\(hex(unmap.size))"])
            }
            if done.straddled > 0 {
                server.counters.straddled += done.straddled
                metrics.vfioUserStraddledUnmaps.increment(by: done.straddled)
                logger.warning("vfio-user: DMA_UNMAP cut regions at its edges; each was unmapped whole and its parts outside the range mapped again", metadata: [
                    "device": "\(server.guest)", "iova": "\(hex(unmap.iova))", "size": "\(hex(unmap.size))", "regions": "\(done.straddled)"])
            }
            return .success(.dmaUnmap(unmap))
        case let .failure(error):
            metrics.record(error.report)
            logger.error("vfio-user: DMA_UNMAP failed in the kernel; part of the range stays reachable",
                         metadata: ["device": "\(server.guest)", "error": "\(error)"])
            return .failure(VFIOUserRefusal(errno: error.errno, "\(header): \(error.message)"))
        }
    }
}

/// Why a vfio-user command was refused: the errno of the error reply, and
/// the text the daemon logs.
struct VFIOUserRefusal: Error {
    var errno: Int32
    var message: String
    /// The client asks this of every device and expects some to refuse.
    var expected = false
    init(errno: Int32, _ message: String, expected: Bool = false) {
        self.errno = errno
        self.message = message
        self.expected = expected
    }
}
