import Bridge
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import Wire

extension Daemon {
    /// The next connection on `listener` from a permitted peer; a refused
    /// peer is logged and handed to `refuse`, which owns it (by default it
    /// is closed). nil when none is waiting.
    func acceptPeer(_ listener: UnixListener, socket: String, refuse: (UnixConnection) -> Void = { $0.close() }) -> UnixConnection? {
        while true {
            let connection: UnixConnection
            do {
                guard let c = try listener.accept() else { return nil }
                connection = c
            } catch {
                logger.error("accept on the \(socket) failed", metadata: ["error": "\(error)"])
                return nil
            }
            if policy.allows(connection) { return connection }
            let peer = connection.peer
            logger.warning("\(socket): peer refused: uid \(peer.uid) is not in access.uids and none of its groups is in access.gids",
                           metadata: ["uid": "\(peer.uid)", "gid": "\(peer.gid)", "pid": "\(peer.pid)"])
            refuse(connection)
        }
    }

    func acceptVMM() {
        guard let listener = eventListener else { return }
        // §1.1: a refused peer is closed without a reply.
        while let connection = acceptPeer(listener, socket: "event channel") {
            if let current = vmm {
                // A VMM that reconnects closes its old connection first, but
                // both may be ready in the same poll round, the new one
                // first: read the old one so that its EOF is seen now.
                readVMM(current, drain: true)
            }
            if vmm != nil {
                // §1.1: one VMM at a time; tell the second one why, then close.
                let reply = EventCodec.encodeReply(requestType: 0, tag: 0, EventReply(
                    status: .badState,
                    message: "another VMM is connected to this daemon (pid \(vmm!.connection.peer.pid)); one daemon instance serves one VM"))
                _ = try? connection.sendAll(reply, fds: [])
                connection.close()
                continue
            }
            do { try connection.setNonBlocking(true) } catch {
                connection.close()
                continue
            }
            let session = EventSession(connection: connection)
            vmm = session
            register(session)
            // Not yet "VMM connected": a second daemon starting on these
            // sockets connects and closes at once to see whether anyone
            // listens (UnixListener's stale-socket probe). That is logged
            // when the first bytes arrive (readVMM).
            logger.debug("event channel: connection accepted", metadata: ["pid": "\(connection.peer.pid)", "uid": "\(connection.peer.uid)"])
        }
    }

    func serviceVMM(_ session: EventSession, _ event: Poller.Event) {
        if event.readable || event.hangup || event.error {
            readVMM(session)
        }
        if vmm === session { flush(session) }
        // Config event-busy-poll-us: look again without sleeping for a while.
        if busyPoll > .zero { busyUntil = roundNow + busyPoll }
    }

    /// Reads what the VMM sent, handles every whole frame and sends the
    /// replies. One recvmsg per poll round in the common case: a read that
    /// did not fill the buffer took everything there was, and poll is
    /// level-triggered, so whatever arrives later is reported by the next
    /// poll; a second recvmsg would only return EAGAIN (issue 14: 4 → 3 daemon
    /// calls per request). `drain` reads until EAGAIN or EOF instead: a
    /// reconnecting VMM's old connection must show its end now (acceptVMM).
    ///
    /// Stage stamps are chained, the end of one stage being the start of the
    /// next: a clock read is a syscall on a VM whose clocksource is not the
    /// TSC (hpet: 1.8 µs each).
    func readVMM(_ session: EventSession, drain: Bool = false) {
        let buffer = receiveBuffer
        var reads = 0
        var mark = ContinuousClock.now
        // Not past readPauseBytes of unsent replies: a VMM that reads none blocks itself.
        while !session.closing, reads < 16, session.outbound.byteCount < Self.readPauseBytes {
            reads += 1
            let result: UnixConnection.ReceiveResult
            do {
                result = try session.connection.receive(into: buffer)
            } catch {
                logger.warning("VMM connection failed", metadata: ["error": "\(error)"])
                dropVMM(session)
                return
            }
            switch result {
            case .wouldBlock:
                return
            case .closed:
                dropVMM(session)
                return
            case let .data(count, fds):
                let received = ContinuousClock.now
                stages.receive += mark.duration(to: received).nanosecondCount
                if !session.spoke {
                    session.spoke = true
                    metrics.vmmConnections.increment()
                    logger.info("VMM connected", metadata: ["pid": "\(session.connection.peer.pid)", "uid": "\(session.connection.peer.uid)"])
                }
                session.decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), fds: fds)
                mark = processFrames(session, since: received)
                guard sendReplies(session) else { return }
                let sent = ContinuousClock.now
                stages.ack += mark.duration(to: sent).nanosecondCount
                mark = sent
                roundClock = sent
                if count < buffer.count && !drain { return }
            }
        }
    }

    /// Handles every whole frame buffered, encoding the replies into
    /// `session.replies`; returns the stamp taken after the last request
    /// was handled (`since` when there was none). Every piece of bookkeeping
    /// (metrics, stages, the status line) is done here, before the send, so
    /// that the send is the last thing before poll (issue 14 B6).
    private func processFrames(_ session: EventSession, since start: ContinuousClock.Instant) -> ContinuousClock.Instant {
        var mark = start
        while !session.closing, let next = session.decoder.next() {
            switch next {
            case let .failure(error):
                // Only an oversized length poisons the stream (§1.2).
                metrics.rejectedFrames.increment()
                let header = session.decoder.rejectedHeader
                EventCodec.encodeReply(requestType: header?.type ?? 0, tag: header?.tag ?? 0,
                                       EventReply(status: error.status, message: error.message), appendingTo: &session.replies)
                session.closing = true
            case let .success(frame):
                let timing = bridge.backendTiming
                let ioctlBefore = timing.nanoseconds
                let reply = handle(frame, in: session)
                let ioctl = timing.nanoseconds - ioctlBefore
                // A request that made kernel calls ends its walk at the last
                // one's return, a stamp already taken; building its reply
                // then counts as ack. One clock read fewer per request.
                let handled = ioctl > 0 ? (timing.lastEnd ?? ContinuousClock.now) : ContinuousClock.now
                let elapsed = mark.duration(to: handled).nanosecondCount
                stages.ioctl += ioctl
                stages.walk += elapsed - ioctl
                stages.requests += 1
                mark = handled
                if frame.header.type == EventType.invalidate.rawValue || frame.header.type == EventType.notify.rawValue {
                    // From decoding to the last ioctl's return: the batch as
                    // the VMM waits for it, without the socket.
                    metrics.batchDuration.recordNanoseconds(elapsed)
                }
                if reply.status.closesConnection { session.closing = true }
                if reply.status != .ok && reply.status != .partial && reply.status != .memoryLost { metrics.rejectedFrames.increment() }
                EventCodec.encodeReply(requestType: frame.header.type, tag: frame.header.tag, reply, appendingTo: &session.replies)
            }
        }
        reportStatus(now: mark)
        return mark
    }

    /// Sends the replies encoded so far: at once when nothing is queued
    /// before them, from the session's reused buffer; what the kernel does
    /// not take is queued and goes when poll reports the socket writable.
    /// false: the connection failed and was dropped.
    private func sendReplies(_ session: EventSession) -> Bool {
        defer { session.replies.removeAll(keepingCapacity: true) }
        // Result carries the typed error out of Array's untyped-rethrows closure.
        let outcome = session.replies.withUnsafeBytes { bytes in
            Result { () throws(SystemError) in try session.outbound.send(bytes, to: session.connection) }
        }
        if case let .failure(error) = outcome {
            logger.warning("VMM connection failed", metadata: ["error": "\(error)"])
            dropVMM(session)
            return false
        }
        return true
    }

    private func flush(_ session: EventSession) {
        // Nothing queued (the common case: the replies went at once): no
        // call, no clock read.
        guard !session.outbound.isEmpty else {
            if session.closing { dropVMM(session) }
            return
        }
        do {
            let empty = try session.outbound.flush(to: session.connection)
            if empty && session.closing { dropVMM(session) }
        } catch {
            logger.warning("VMM connection failed", metadata: ["error": "\(error)"])
            dropVMM(session)
        }
    }

    /// The VMM went away. Every mapping stays (§1.1): the device keeps DMA
    /// working while the VMM restarts, and a reconnect re-sends the state.
    func dropVMM(_ session: EventSession) {
        guard vmm === session else { return }
        if session.phase == .loading {
            // §1.5: an unfinished session does not count. The state of the
            // last READY is in force again, so a VMM that dies while
            // re-sending its state loses no mapping at its next READY.
            let report = bridge.abandonLoading()
            metrics.record(report)
            logger.notice("VMM left before READY; the state it sent is dropped and the last completed session's is in force again",
                          metadata: ["maps": "\(report.maps)", "unmaps": "\(report.unmaps)", "failures": "\(report.failures.count)"])
        }
        // Descriptors of a frame that never completed (§1.2) close now
        // rather than whenever the session object goes.
        _ = session.decoder.takeAllFDs()
        unregister(session)
        session.connection.close()
        vmm = nil
        if session.spoke {
            logger.info("VMM disconnected; mappings kept until it reconnects")
        } else {
            logger.debug("event channel: a connection closed without sending anything (a probe for a live daemon, such as a second one starting)",
                         metadata: ["pid": "\(session.connection.peer.pid)"])
        }
    }

    // MARK: requests

    /// Handles one frame. Its descriptors are owned by the frame: only
    /// SET_MEM_TABLE uses them (the codec refuses them elsewhere), and only
    /// while it maps them; all close when the frame goes.
    func handle(_ frame: FrameDecoder<FileDescriptor>.Frame, in session: EventSession) -> EventReply {
        let request: EventRequest
        switch EventCodec.decodeRequest(frame) {
        case let .failure(error):
            return EventReply(status: error.status, message: error.message)
        case let .success(r):
            request = r
        }
        if shutdownRequested {
            return EventReply(status: .shuttingDown, message: "the daemon is stopping")
        }
        if session.phase == .awaitingHello, request.type != .hello {
            return EventReply(status: .badState, message: "\(request.type.name) before HELLO: send HELLO first (docs/PROTOCOL.md §1.5)")
        }
        switch request {
        case let .hello(_, flags, cap, ecap):
            let caps = IOMMUCapabilities(cap: cap, ecap: ecap)
            let source: TranslationSource = HelloFlags(rawValue: flags).contains(.notifierMode) ? .notifier : .tables
            do {
                try bridge.beginLoading(caps, source: source)
            } catch {
                return EventReply(status: .capability, message: error.message)
            }
            session.phase = .loading
            logger.info("VMM hello", metadata: ["cap": "0x\(String(cap, radix: 16))", "ecap": "0x\(String(ecap, radix: 16))",
                                                "source": "\(source.rawValue)"])
            return .helloAccepted(devices: UInt32(devices.count))
        case let .setMemTable(regions):
            var specs: [GuestRAMRegionSpec] = []
            for (i, r) in regions.enumerated() {
                specs.append(GuestRAMRegionSpec(gpa: r.gpa, size: r.size, backing: .fileDescriptor(frame.fds[i], offset: r.offset)))
            }
            let memory: GuestRAM
            do {
                memory = try GuestRAM(specs, reusing: bridge.memoryToReuse)
            } catch {
                return EventReply(status: .memory, message: "memory table refused: \(error)")
            }
            logger.info("guest memory table", metadata: ["regions": "\(regions.count)", "bytes": "\(memory.totalSize)"])
            return reply(for: bridge.setMemory(memory))
        case let .setRootTable(address):
            return reply(for: bridge.setRootTable(address == 0 ? nil : address))
        case let .setTranslation(enabled):
            return reply(for: bridge.setTranslationEnabled(enabled))
        case .reset:
            return reply(for: bridge.reset())
        case .ready:
            guard session.phase == .loading else {
                return EventReply(status: .badState, message: "READY outside loading: it ends the state a HELLO starts")
            }
            session.phase = .ready
            vmmConnectedOnce = true
            let report = bridge.resumeSync()
            recordResync(report)
            logger.info("VMM ready; synced", metadata: ["maps": "\(report.maps)", "unmaps": "\(report.unmaps)", "faults": "\(report.faults)"])
            return reply(for: report)
        case let .invalidate(words):
            guard session.phase == .ready else {
                return EventReply(status: .badState, message: "INVALIDATE while loading: send READY first")
            }
            guard bridge.source == .tables else {
                return EventReply(status: .badState, message: "INVALIDATE in notifier mode: this session sends NOTIFY (HELLO flags bit 0)")
            }
            metrics.invalidations.increment(by: words.count)
            return reply(for: bridge.process(words) { (low: $0.low, high: $0.high) })
        case let .notify(entries):
            guard session.phase == .ready else {
                return EventReply(status: .badState, message: "NOTIFY while loading: send READY first")
            }
            guard bridge.source == .notifier else {
                return EventReply(status: .badState, message: "NOTIFY outside notifier mode: set HELLO flags bit 0 to use it")
            }
            guard bridge.translationEnabled else {
                // GCMD.TE clear: DMA is untranslated and nothing is mapped
                // (§1.6 SET_TRANSLATION), so there is nothing to notify.
                return EventReply(status: .badState, message: "NOTIFY while translation is disabled: send SET_TRANSLATION 1 when the guest sets GCMD.TE, then its mappings; unmaps after SET_TRANSLATION 0 are not needed, it unmapped everything")
            }
            metrics.notifierEntries.increment(by: entries.count)
            let events = entries.map { e in
                NotifierEvent(sourceID: SourceID(rawValue: e.sourceID), iova: e.iova, gpa: e.translatedAddress,
                              size: e.addressMask &+ 1, permission: e.permission)
            }
            return reply(for: bridge.notify(events))
        case .ping:
            return .ok
        }
    }

    /// A state change's reply: OK, MEMORY_LOST when a guest RAM region was
    /// lost meanwhile, or PARTIAL with what the kernel refused.
    private func reply(for report: SyncReport) -> EventReply {
        metrics.record(report)
        if let lost = memoryLostReply(report) { return lost }
        guard !report.failures.isEmpty else { return .ok }
        return EventReply(status: .partial,
                          message: "\(report.failures.count) kernel operation(s) failed, first: \(report.failures[0]); the control socket's status lists them; a replay retries")
    }

    private func reply(for result: BatchResult) -> EventReply {
        metrics.record(result.report)
        var body = BatchResultBody(waits: UInt32(result.waits), rejectedIndex: Int32(result.rejected?.index ?? -1),
                                   maps: UInt32(result.report.maps), unmaps: UInt32(result.report.unmaps),
                                   faults: UInt32(result.report.faults), failures: [])
        body.failures = result.report.failures.map { f in
            let op: FailureRecord.Operation = switch f.operation {
            case .map: .map
            case .unmap: .unmap
            case .unmapAll: .unmapAll
            }
            return FailureRecord(sourceID: f.sourceID.rawValue, operation: op, errno: f.error.errno, iova: f.iova, size: f.size,
                                 reason: f.error.description)
        }
        var status = EventStatus.ok
        var message = ""
        if let rejected = result.rejected {
            status = .descriptor
            message = rejected.reason
        } else if let lost = memoryLostReply(result.report) {
            status = lost.status
            message = lost.message
        } else if !body.failures.isEmpty {
            status = .partial
            message = "\(body.failures.count) kernel operation(s) failed; the shadow holds what the kernel accepted and a replay retries the rest"
        }
        return EventReply(status: status, message: message, body: .batch(body))
    }

    /// MEMORY_LOST (§1.7) when the request found guest RAM regions lost: the
    /// VMM learns which, and that it must send a memory table that stays whole.
    private func memoryLostReply(_ report: SyncReport) -> EventReply? {
        guard let first = report.lostRegions.first else { return nil }
        let more = report.lostRegions.count > 1 ? " (and \(report.lostRegions.count - 1) more region(s))" : ""
        return EventReply(status: .memoryLost, message: "\(first)\(more); send SET_MEM_TABLE again")
    }

    /// The latest end of a backend application over every device.
    func refreshDeviceMetrics() {
        for space in bridge.spaces.values { metrics.recordDevice(space) }
    }
}

