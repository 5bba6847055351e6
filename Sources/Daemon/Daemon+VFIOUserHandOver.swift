import Bridge
import JSON
import Logging
import Posix
import UnixIO
import VTd
import Wire

/// A vfio-user client carried over a `systemctl restart` (a hand-over).
///
/// QEMU 11.1 treats a closed vfio-user socket as a lost device and does not
/// reconnect, so the connection itself must outlive the process. At a
/// hand-over the daemon is between two messages (it has answered all it
/// read), so the session can be written down exactly: the connection, the
/// files the client's DMA_MAPs brought, and a record of what VERSION
/// negotiated and which interrupts are wired go to systemd's fd store; the
/// regions are in the device's mapping journal, by file and offset. The next
/// process takes them back, maps the files again, and finds the regions in
/// them: QEMU's next message is answered as if nothing happened.
///
/// A crash leaves no such record (the session is stored only at a
/// hand-over), because a dead process may have read a message it never
/// answered: QEMU then sees its socket close, and the regions are unmapped
/// as on any disconnect.
extension Daemon {
    /// Stores the session of `server` for the next process, if it is between
    /// messages; returns whether it did. Its regions, files and interrupts
    /// are left as they are.
    func handOverVFIOUser(_ server: VFIOUserServer) -> Bool {
        guard fdStore.isAvailable, let session = server.session, session.negotiated, !session.closing,
              session.decoder.bufferedByteCount == 0, session.outbound.isEmpty else { return false }
        let sid = server.guest
        let caps = session.clientCapabilities
        let record: JSONValue = .object([
            "max-message-fds": .int(Int64(caps.maxMessageFDs)), "max-data-transfer": .int(Int64(caps.maxDataTransferSize)),
            "page-sizes": .int(Int64(bitPattern: caps.pageSizes)), "max-dma-maps": .int(Int64(caps.maxDMAMaps)),
            "write-multiple": .bool(caps.writeMultiple),
            "wired-irqs": .array(session.wiredIRQs.sorted().map { .int(Int64($0)) }),
            "files": .int(Int64(session.memory.files.count)),
        ])
        let text = Array(record.serialized.utf8)
        let memfd: FileDescriptor
        do {
            memfd = try FileDescriptor.memoryFile(name: "vtd-bridge vfio-user session \(sid)", size: 0)
            try memfd.writeAll(text)
        } catch {
            logger.error("vfio-user: the session cannot be written down; it ends with this process", metadata: ["device": "\(sid)", "error": "\(error)"])
            return false
        }
        for file in session.memory.files { fdStore.store(FDStore.deviceName(sid, "vu-file"), file.descriptor) }
        fdStore.store(FDStore.deviceName(sid, "vu-connection"), session.connection.descriptor)
        // Last: its presence says the rest is complete.
        fdStore.store(FDStore.deviceName(sid, "vu-session"), memfd)
        logger.notice("vfio-user: the client's session is handed over", metadata: [
            "device": "\(sid)", "pid": "\(session.connection.peer.pid)", "files": "\(session.memory.files.count)",
            "regions": "\(bridge.spaces[sid]?.shadow.count ?? 0)",
        ])
        return true
    }

    /// What a previous process handed over for device `sid`: the client's
    /// connection, its files (mapped again here) and the session record;
    /// nil when there is no complete hand-over (then whatever is stored is
    /// closed). Either way the names leave the store: they belong to this
    /// process now, and a crash must not bring back a stale session.
    func takeHandedOverVFIOUser(_ sid: SourceID) -> (connection: UnixConnection, memory: VFIOUserMemory, record: JSONValue)? {
        let connectionFD = fdStore.take(FDStore.deviceName(sid, "vu-connection"))
        let recordFD = fdStore.take(FDStore.deviceName(sid, "vu-session"))
        let files = fdStore.takeAll(FDStore.deviceName(sid, "vu-file"))
        for role in ["vu-connection", "vu-session", "vu-file"] { fdStore.remove(FDStore.deviceName(sid, role)) }
        func discard(_ why: String) -> (connection: UnixConnection, memory: VFIOUserMemory, record: JSONValue)? {
            if connectionFD != nil || recordFD != nil || !files.isEmpty {
                logger.warning("vfio-user: the stored session is not taken over; its client's connection ends",
                               metadata: ["device": "\(sid)", "why": "\(why)"])
            }
            try? connectionFD?.close()
            try? recordFD?.close()
            for f in files { try? f.close() }
            return nil
        }
        guard let connectionFD, let recordFD else { return discard("no complete hand-over (a crash ends the session)") }
        let record: JSONValue
        do {
            let size = Int(try recordFD.status().size)
            guard size > 0, size < 1 << 16 else { return discard("the session record is \(size) bytes") }
            let base = try recordFD.mapShared(length: size, offset: 0, writable: false)
            defer { try? SharedMapping.unmap(base, length: size) }
            record = try JSONValue.parse(utf8: Array(UnsafeRawBufferPointer(start: base, count: size)))
            try? recordFD.close()
        } catch {
            return discard("the session record cannot be read: \(error)")
        }
        guard record["files"]?.intValue == files.count else {
            return discard("the record names \(record["files"]?.intValue ?? -1) files, \(files.count) were stored")
        }
        let connection: UnixConnection
        do {
            connection = try UnixConnection(adopting: connectionFD, name: "vfio-user client of \(sid)")
            try connection.setNonBlocking(true)
        } catch {
            return discard("the stored connection: \(error)")
        }
        let memory = VFIOUserMemory()
        let problems = memory.adopt(files)
        if !problems.isEmpty {
            logger.warning("vfio-user: stored files not mapped; their regions are unmapped", metadata: ["device": "\(sid)", "problems": "\(problems)"])
        }
        return (connection, memory, record)
    }

    /// Resumes a handed-over session on `server`: VERSION is done, the
    /// client's regions are those the adopted mappings resolve to in its
    /// files, its interrupts stay wired.
    func resumeVFIOUser(_ server: VFIOUserServer, _ taken: (connection: UnixConnection, memory: VFIOUserMemory, record: JSONValue)) {
        let sid = server.guest
        let session = VFIOUserSession(server: server, connection: taken.connection, limits: vfioUserLimits, memory: taken.memory)
        session.negotiated = true
        let r = taken.record
        session.clientCapabilities = VFIOUserCapabilities(
            maxMessageFDs: UInt32(clamping: r["max-message-fds"]?.intValue ?? 1),
            maxDataTransferSize: UInt32(clamping: r["max-data-transfer"]?.intValue ?? Int(VFIOUserLimits.defaultMaxDataTransfer)),
            pageSizes: UInt64(bitPattern: Int64(r["page-sizes"]?.intValue ?? 4096)),
            maxDMAMaps: UInt32(clamping: r["max-dma-maps"]?.intValue ?? 65535),
            writeMultiple: r["write-multiple"]?.boolValue ?? false)
        session.wiredIRQs = Set((r["wired-irqs"]?.arrayValue ?? []).compactMap { $0.intValue.map { UInt32(clamping: $0) } })
        server.session = session
        server.counters.connections += 1
        devices[sid]?.journaled?.files = taken.memory
        let report = bridge.adoptClientRegions(sid)
        metrics.record(report)
        register(session)
        logger.notice("vfio-user: resumed the client's session from the previous process", metadata: [
            "device": "\(sid)", "pid": "\(taken.connection.peer.pid)", "regions": "\(bridge.spaces[sid]?.clientDMA?.count ?? 0)",
            "calls": "\(report.maps + report.unmaps)",
        ])
    }
}
