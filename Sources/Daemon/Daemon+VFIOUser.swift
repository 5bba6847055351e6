import Bridge
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import Wire

/// The vfio-user front-end's lifecycle: a server per device that has a
/// vfio-user socket, its client sessions, and what `status` shows of them.
/// The messages themselves are handled in Daemon+VFIOUserMessages.swift.
extension Daemon {
    /// What the server offers in its VERSION reply and enforces on what it
    /// receives: the spec's default transfer size (QEMU's too).
    var vfioUserLimits: VFIOUserLimits { VFIOUserLimits() }

    /// Starts serving `device` at its vfio-user socket. The device's space
    /// already exists, fed by the client and empty: the container is open
    /// before a client connects, since QEMU's first DMA_MAP comes before any
    /// question about the device.
    func startVFIOUserServer(_ guest: SourceID, path: String) throws(ControlError) {
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !dir.isEmpty { _ = try? FileSystem.makeDirectory(dir, mode: 0o750) }
        let listener: UnixListener
        do {
            // The stored one after a restart: QEMU connecting meanwhile waits.
            listener = try self.listener(named: FDStore.deviceName(guest, "vu-listener"), path: path)
        } catch {
            throw ControlError(code: .vfioError, message: "the vfio-user socket for \(guest) cannot listen: \(error)")
        }
        let server = VFIOUserServer(guest: guest, listener: listener)
        vfioUserServers[guest] = server
        register(VFIOUserListenerClient(server))
        logger.info("serving vfio-user", metadata: ["device": "\(guest)", "socket": "\(path)"])
    }

    /// Stops serving `guest`: its client is dropped (its regions unmapped,
    /// its interrupts torn down) and the socket file removed.
    func stopVFIOUserServer(_ guest: SourceID) {
        guard let server = vfioUserServers.removeValue(forKey: guest) else { return }
        if let session = server.session { dropVFIOUser(session, why: "the device is being detached") }
        polled.removeValue(forKey: server.listener.fd)
        _ = server.listener.close()
        fdStore.remove(FDStore.deviceName(guest, "vu-listener"))
    }

    func acceptVFIOUser(_ server: VFIOUserServer) {
        while let connection = acceptPeer(server.listener, socket: "vfio-user socket \(server.path)") {
            if let current = server.session {
                // A QEMU that restarts may be seen connecting before its old
                // connection's end: read the old one first.
                readVFIOUser(current, drain: true)
            }
            if let current = server.session {
                logger.warning("vfio-user: a second client for the device was refused; one QEMU drives a device at a time",
                               metadata: ["device": "\(server.guest)", "pid": "\(connection.peer.pid)",
                                          "connected-pid": "\(current.connection.peer.pid)"])
                connection.close()
                continue
            }
            do { try connection.setNonBlocking(true) } catch {
                connection.close()
                continue
            }
            let session = VFIOUserSession(server: server, connection: connection, limits: vfioUserLimits)
            server.session = session
            server.counters.connections += 1
            devices[server.guest]?.journaled?.files = session.memory
            register(session)
            metrics.vfioUserConnections.increment()
            logger.info("vfio-user client connected", metadata: ["device": "\(server.guest)", "pid": "\(connection.peer.pid)",
                                                                 "uid": "\(connection.peer.uid)"])
        }
    }

    func serviceVFIOUser(_ session: VFIOUserSession, _ event: Poller.Event) {
        if event.readable || event.hangup || event.error { readVFIOUser(session) }
        guard session.server.session === session else { return }
        do {
            let empty = try session.outbound.flush(to: session.connection)
            if empty && session.closing { dropVFIOUser(session, why: "the connection was closed after an unrecoverable error") }
        } catch {
            dropVFIOUser(session, why: "sending failed: \(error)")
        }
    }

    /// Reads what the client sent, handles every whole message and sends
    /// the replies at once (those without descriptors straight from their
    /// encoding when nothing is queued before them). As on the event channel
    /// (readVMM), a read that did not fill the buffer ends the round: poll is
    /// level-triggered, and a second recvmsg would only return EAGAIN, a
    /// system call per DMA_MAP that QEMU's vCPU waits for. `drain` reads to
    /// EAGAIN or EOF, for a reconnecting client's old connection.
    func readVFIOUser(_ session: VFIOUserSession, drain: Bool = false) {
        var reads = 0
        while !session.closing, reads < 16, session.outbound.byteCount < Self.readPauseBytes {
            reads += 1
            let result: UnixConnection.ReceiveResult
            do {
                result = try session.connection.receive(into: receiveBuffer)
            } catch {
                dropVFIOUser(session, why: "receiving failed: \(error)")
                return
            }
            switch result {
            case .wouldBlock:
                return
            case .closed:
                dropVFIOUser(session, why: "the client closed the connection")
                return
            case let .data(count, fds):
                session.decoder.append(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<count]), fds: fds)
                while !session.closing, let next = session.decoder.next() {
                    switch next {
                    case let .failure(error):
                        // Only a size that cannot be framed ends up here: the
                        // stream cannot go on (VFIOUserStreamDecoder).
                        session.server.counters.refused += 1
                        metrics.vfioUserRefused.increment()
                        logger.warning("vfio-user: closing the connection", metadata: ["device": "\(session.server.guest)", "error": "\(error)"])
                        if let reply = VFIOUserCodec.encodeErrorReply(for: error) { session.outbound.enqueue(reply) }
                        session.closing = true
                    case let .success(message):
                        let (reply, fds) = handleVFIOUser(message, in: session)
                        // Every descriptor that came with it is closed now;
                        // a kept file is held by its mapping.
                        for fd in message.fds where fd.isOpen { try? fd.close() }
                        guard let reply else { continue }
                        if fds.isEmpty {
                            // Result carries the typed error out of Array's untyped-rethrows closure.
                            let sent = reply.withUnsafeBytes { bytes in
                                Result { () throws(SystemError) in try session.outbound.send(bytes, to: session.connection) }
                            }
                            if case let .failure(error) = sent {
                                dropVFIOUser(session, why: "sending failed: \(error)")
                                return
                            }
                        } else {
                            session.outbound.enqueue(reply, fds: fds)
                        }
                    }
                }
                if count < receiveBuffer.count && !drain { return }
            }
        }
    }

    /// Ends a client session: its regions are unmapped (QEMU gone, nothing
    /// may stay reachable on its behalf), its interrupts torn down, the
    /// files it sent unmapped, and the server waits for the next client.
    func dropVFIOUser(_ session: VFIOUserSession, why: String) {
        let server = session.server
        guard server.session === session else { return }
        _ = session.decoder.takeAllFDs()
        unregister(session)
        session.connection.close()
        server.session = nil
        devices[server.guest]?.journaled?.files = nil
        let unmapped = bridge.spaces[server.guest]?.shadow.count ?? 0
        let report = bridge.clientDisconnected(server.guest)
        metrics.record(report)
        for failure in report.failures {
            logger.error("vfio-user: unmapping a gone client's regions failed", metadata: ["failure": "\(failure)"])
        }
        if let device = devices[server.guest]?.host.vfioDevice {
            for index in session.wiredIRQs.sorted() {
                do {
                    try device.setIRQs(index: index, start: 0, count: 0, action: VFIOUserIRQSet.actionTrigger, data: .none)
                } catch {
                    logger.warning("vfio-user: tearing down interrupts failed", metadata: ["index": "\(index)", "error": "\(error)"])
                }
            }
        }
        session.memory.releaseAll()
        logger.info("vfio-user client disconnected; its mappings are removed",
                    metadata: ["device": "\(server.guest)", "why": "\(why)", "unmapped": "\(unmapped)"])
    }

    /// The `vfio-user` object of a device in `status`.
    func vfioUserStatus(_ server: VFIOUserServer) -> JSONValue {
        let c = server.counters
        var object: [String: JSONValue] = [
            "socket": .string(server.path),
            "connected": .bool(server.session != nil),
            "connections": .int(Int64(c.connections)),
            "messages": .int(Int64(c.messages)),
            "refused": .int(Int64(c.refused)),
            "dma-maps": .int(Int64(c.dmaMaps)),
            "dma-unmaps": .int(Int64(c.dmaUnmaps)),
            "empty-unmaps": .int(Int64(c.emptyUnmaps)),
            "straddled-regions": .int(Int64(c.straddled)),
            "maps-without-file": .int(Int64(c.mapsWithoutFile)),
            "region-reads": .int(Int64(c.regionReads)),
            "region-writes": .int(Int64(c.regionWrites)),
            "irq-sets": .int(Int64(c.irqSets)),
            "resets": .int(Int64(c.resets)),
        ]
        if let session = server.session {
            object["pid"] = .int(Int64(session.connection.peer.pid))
            object["memory-files"] = .int(Int64(session.memory.files.count))
            object["memory-bytes"] = .int(Int64(session.memory.mappedBytes))
            object["irqs-wired"] = .array(session.wiredIRQs.sorted().map { .int(Int64($0)) })
        }
        return .object(object)
    }
}
