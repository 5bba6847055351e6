import Bridge
import Glibc
import Logging
import Posix
import UnixIO
import VFIO
import VTd
import Wire

extension Daemon {
    func acceptControl() {
        guard let listener = controlListener else { return }
        while let connection = acceptPeer(listener, socket: "control socket", refuse: {
            // §2.1: one refusal, then closed.
            refuseControl($0, .permissionDenied(uid: $0.peer.uid, gid: $0.peer.gid, pid: $0.peer.pid))
        }) {
            if controls.count >= config.maxClients { reapControlClients() }
            guard controls.count < config.maxClients else {
                refuseControl(connection, .tooManyClients(limit: config.maxClients))
                continue
            }
            do { try connection.setNonBlocking(true) } catch {
                connection.close()
                continue
            }
            let session = ControlSession(connection: connection)
            controls[connection.fd] = session
            register(session)
        }
    }

    /// Reads every control client once, so that those that have hung up
    /// are dropped now. A client that closes its socket is only seen gone
    /// when its end of stream is read, normally in the poll round that
    /// reports it; but the listener may be serviced first in that round, or
    /// the closed connections may still wait in the backlog (accepted in
    /// this very call). Without this, `control.max-clients` would count
    /// clients that have already left and refuse one that connects right
    /// after them (§2.1). A client that half-closed after its request is
    /// still answered: this is the same read the poll loop would do.
    private func reapControlClients() {
        for session in Array(controls.values) {
            serviceControl(session, (fd: session.connection.fd, readable: true, writable: true, hangup: false, error: false))
        }
    }

    func serviceControl(_ session: ControlSession, _ event: Poller.Event) {
        if event.readable || event.hangup || event.error {
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            var reads = 0
            // A bounded number of reads per wakeup: a client that writes
            // without pause must not starve the others.
            // Nor past readPauseBytes of unsent replies: a client that does
            // not read them blocks itself, not the daemon's memory.
            readLoop: while !session.closing, reads < 16, session.outbound.byteCount < Self.readPauseBytes {
                reads += 1
                let result: UnixConnection.ReceiveResult
                do {
                    result = try buffer.withUnsafeMutableBytes { try session.connection.receive(into: $0) }
                } catch {
                    dropControl(session)
                    return
                }
                switch result {
                case .wouldBlock:
                    break readLoop
                case .closed:
                    // Answer what was asked before the peer half-closed.
                    session.closing = true
                case let .data(count, _):
                    // Nothing is ever passed to us on this socket; what a
                    // client sends anyway is closed as the result goes.
                    buffer.withUnsafeBytes { session.lines.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                    processLines(session)
                }
            }
        }
        guard controls[session.connection.fd] === session else { return }
        do {
            let empty = try session.outbound.flush(to: session.connection)
            if empty && session.closing { dropControl(session) }
            else if session.outbound.byteCount > Self.maxQueuedBytes {
                logger.warning("control client is not reading its replies; dropped", metadata: ["pid": "\(session.connection.peer.pid)"])
                dropControl(session)
            }
        } catch {
            dropControl(session)
        }
    }

    private func processLines(_ session: ControlSession) {
        while !session.closing, let next = session.lines.next() {
            switch next {
            case let .failure(error):
                session.outbound.enqueue(Array(ControlCodec.errorLine(id: nil, error: error).utf8), fds: [])
                if error.code == .lineTooLong { session.closing = true }
            case let .success(line):
                if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
                switch ControlCodec.parseRequest(line) {
                case let .failure(failure):
                    session.outbound.enqueue(Array(ControlCodec.errorLine(id: failure.id, error: failure.error).utf8), fds: [])
                case let .success(request):
                    let (result, fds) = execute(request)
                    let text: String = switch result {
                    case let .success(value): ControlCodec.successLine(id: request.id, result: value)
                    case let .failure(error): ControlCodec.errorLine(id: request.id, error: error)
                    }
                    session.outbound.enqueue(Array(text.utf8), fds: fds)
                }
            }
        }
    }

    func dropControl(_ session: ControlSession) {
        guard controls[session.connection.fd] === session else { return }
        controls.removeValue(forKey: session.connection.fd)
        unregister(session)
        session.connection.close()
    }

    // MARK: commands

    /// Runs one command. The second result is descriptors to pass with the
    /// reply (attach's device fd); the outbound queue holds them until sent.
    ///
    /// The switch has no default: a command added to `ControlCommand`
    /// without a case here does not compile. Unknown names never get here
    /// (`ControlCodec.parseRequest` answers them).
    func execute(_ request: ControlRequest) -> (Result<JSONValue, ControlError>, [FileDescriptor]) {
        if shutdownRequested, request.command != .status {
            return (.failure(.shuttingDown), [])
        }
        do throws(ControlError) {
            switch request.command {
            case .attach: return try attachCommand(request)
            case .detach: return (.success(try detachCommand(request)), [])
            case .replay: return (.success(try replayCommand(request)), [])
            case .status:
                try request.allowOnly([])
                return (.success(statusObject()), [])
            case .mappings: return (.success(try mappingsCommand(request)), [])
            case .metrics:
                try request.allowOnly([])
                return (.success(.object(["text": .string(currentMetricsText())])), [])
            case .logLevel: return (.success(try logLevelCommand(request)), [])
            case .shutdown:
                try request.allowOnly([])
                logger.notice("shutdown requested on the control socket")
                shutdownRequested = true
                return (.success(.object([:])), [])
            }
        } catch {
            return (.failure(error), [])
        }
    }

    private func guestArgument(_ request: ControlRequest) throws(ControlError) -> SourceID {
        let text = try request.requiredString("guest")
        guard let sid = SourceID(text) else {
            throw ControlError.invalidArgument("guest", "\"\(text)\" is not a source-id; expected BB:DD.F in hex, e.g. 00:03.0")
        }
        return sid
    }

    private func attachCommand(_ request: ControlRequest) throws(ControlError) -> (Result<JSONValue, ControlError>, [FileDescriptor]) {
        try request.allowOnly(["host", "group", "guest", "return-fd", "quota", "vfio-user"])
        let guest = try guestArgument(request)
        let host: DeviceSpec.Host
        switch (try request.string("host"), try request.int("group")) {
        case let (text?, nil):
            do {
                host = try DeviceSpec.parse("\(text)=\(guest)").host
            } catch {
                throw ControlError.invalidArgument("host", "\"\(text)\" is not a PCI address; expected DDDD:BB:DD.F, e.g. 0000:01:00.0")
            }
        case let (nil, number?):
            guard number >= 0 else { throw ControlError.invalidArgument("group", "a group number is not negative") }
            host = .group(number)
        case (nil, nil):
            throw ControlError.missingArgument("host")
        default:
            throw ControlError.invalidArgument("host", "give either host or group, not both")
        }
        let quota = try request.int("quota")
        if let quota, quota <= 0 { throw ControlError.invalidArgument("quota", "must be a positive number of mappings") }
        let returnFD = try request.bool("return-fd") ?? false
        if returnFD && config.backend == .dryRun {
            // Refused before anything is attached: an error reply leaves no state behind.
            throw ControlError.invalidArgument("return-fd", "the dry-run backend opens no device, so there is no device file descriptor to return")
        }
        var socket: String?
        if let path = try request.string("vfio-user") {
            do {
                socket = try DeviceSpec.checkSocketPath(path) { ConfigError(key: "vfio-user", message: $0) }
            } catch {
                throw ControlError.invalidArgument("vfio-user", error.message)
            }
            if config.backend == .dryRun {
                throw ControlError.invalidArgument("vfio-user", "the dry-run backend opens no device, so there is no device to serve to a vfio-user client")
            }
        }
        let spec = DeviceSpec(host: host, guest: guest, quota: quota, vfioUserSocket: socket)
        let device: AttachedDevice
        var report = SyncReport()
        var already = false
        if let existing = devices[guest], existing.spec.host == host, existing.spec.vfioUserSocket == socket {
            // Attaching what is already attached is not an error: a VMM that
            // reconnects after a daemon restart asks again for its device fd.
            device = existing
            already = true
        } else {
            do {
                (device, report) = try attachDevice(spec, persistent: true)
            } catch {
                return (.failure(error), [])
            }
        }
        var fds: [FileDescriptor] = []
        if returnFD {
            do {
                fds = [try device.duplicateDeviceFD()]
            } catch {
                return (.failure(.vfioError("attached, but the device fd cannot be returned: \(error)")), [])
            }
        }
        var result: [String: JSONValue] = [
            "guest": .string(guest.description), "host": .string(device.hostDescription),
            "backend": .string(device.backendName), "mappings": .int(Int64(bridge.spaces[guest]?.shadow.count ?? 0)),
            "device-fd": .bool(!fds.isEmpty), "already-attached": .bool(already),
        ]
        result["group"] = device.groupNumber.map { .int(Int64($0)) } ?? .null
        result["vfio-user"] = device.spec.vfioUserSocket.map { .string($0) } ?? .null
        if !report.failures.isEmpty { result["failures"] = failuresJSON(report) }
        return (.success(.object(result)), fds)
    }

    private func detachCommand(_ request: ControlRequest) throws(ControlError) -> JSONValue {
        try request.allowOnly(["guest"])
        let guest = try guestArgument(request)
        let unmapped = bridge.spaces[guest]?.shadow.count ?? 0
        let report = try detachDevice(guest)
        var result: [String: JSONValue] = ["guest": .string(guest.description), "unmapped": .int(Int64(unmapped))]
        if !report.failures.isEmpty { result["failures"] = failuresJSON(report) }
        return .object(result)
    }

    private func replayCommand(_ request: ControlRequest) throws(ControlError) -> JSONValue {
        try request.allowOnly(["guest", "all"])
        let all = try request.bool("all") ?? false
        let guest: SourceID? = try request.string("guest") == nil ? nil : try guestArgument(request)
        guard all != (guest != nil) else {
            throw ControlError.invalidArgument("guest", "give either guest or \"all\": true")
        }
        if let guest, bridge.spaces[guest] == nil { throw .notAttached(guest: guest.description) }
        // Nothing to walk before a VMM has sent guest RAM: a replay then
        // would re-read no table and report zeros, as if all were in sync.
        guard bridge.memory != nil else { throw .noVMM }
        let report: SyncReport
        do {
            report = try bridge.replay(guest)
        } catch {
            throw ControlError(code: .notAttached, message: error.message)
        }
        metrics.record(report)
        var result: [String: JSONValue] = ["maps": .int(Int64(report.maps)), "unmaps": .int(Int64(report.unmaps)),
                                           "faults": .int(Int64(report.faults)), "failures": failuresJSON(report)]
        if !report.lostRegions.isEmpty { result["lost-memory-regions"] = lostRegionsJSON(report.lostRegions) }
        return .object(result)
    }

    private func mappingsCommand(_ request: ControlRequest) throws(ControlError) -> JSONValue {
        try request.allowOnly(["guest"])
        let guest = try guestArgument(request)
        guard let space = bridge.spaces[guest] else { throw .notAttached(guest: guest.description) }
        return TranslationReport(space: space, memory: bridge.memory).json
    }

    private func logLevelCommand(_ request: ControlRequest) throws(ControlError) -> JSONValue {
        try request.allowOnly(["level"])
        if let text = try request.string("level") {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ControlError.invalidArgument("level", "\"\(text)\" is not a log level; expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            logLevel.setLevel(level)
            logger.notice("log level changed", metadata: ["level": "\(level)"])
        }
        return .object(["level": .string(logLevel.level.rawValue)])
    }

    /// Guest RAM regions lost to a file that shrank (PROTOCOL.md §2.3 `status`).
    func lostRegionsJSON(_ regions: [GuestRAM.LostRegion]) -> JSONValue {
        .array(regions.map { r in
            .object(["gpa": .string("0x" + String(r.gpa, radix: 16)), "size": .string("0x" + String(r.size, radix: 16)),
                     "fault-offset": .string("0x" + String(r.faultOffset, radix: 16)), "message": .string(r.description)])
        })
    }

    func failuresJSON(_ report: SyncReport) -> JSONValue {
        .array(report.failures.map { f in
            .object(["guest": .string(f.sourceID.description), "operation": .string(f.operation.rawValue),
                     "iova": .string("0x" + String(f.iova, radix: 16)), "size": .string("0x" + String(f.size, radix: 16)),
                     "errno": .int(Int64(f.error.errno)), "message": .string(f.error.description)])
        })
    }

    func statusObject() -> JSONValue {
        var vmmObject: [String: JSONValue] = [
            "connected": .bool(vmm != nil),
            "session": .string(vmm?.phase.rawValue ?? "none"),
            "notifier-mode": .bool(bridge.source == .notifier),
            "root-table": bridge.rootTable.map { .string("0x" + String($0, radix: 16)) } ?? .null,
            "translation": .bool(bridge.translationEnabled),
            "memory-regions": .int(Int64(bridge.memory?.regions.count ?? 0)),
            "memory-bytes": .int(Int64(clamping: bridge.memory?.totalSize ?? 0)),
            "lost-memory-regions": lostRegionsJSON(bridge.memory?.lostRegions ?? []),
        ]
        if let peer = vmm?.connection.peer { vmmObject["pid"] = .int(Int64(peer.pid)) }
        var deviceList: [JSONValue] = []
        for sid in devices.keys.sorted() {
            let device = devices[sid]!
            guard let space = bridge.spaces[sid] else { continue }
            let report = TranslationReport(space: space, memory: bridge.memory)
            var faults: [String: JSONValue] = [:]
            for (reason, count) in space.faults.counts { faults[reason.rawValue] = .int(Int64(clamping: count)) }
            let recent: [JSONValue] = space.faults.recent.suffix(8).map { .string($0.description) }
            var object: [String: JSONValue] = [
                "guest": .string(sid.description), "host": .string(device.hostDescription),
                "backend": .string(device.backendName),
                "domain": report.domain.map { .int(Int64($0)) } ?? .null,
                "mode": .string(report.mode),
                "mappings": .int(Int64(space.shadow.count)),
                "mapped-bytes": .int(Int64(clamping: space.shadow.mappedBytes)),
                "maps": .int(Int64(space.totalMaps)), "unmaps": .int(Int64(space.totalUnmaps)),
                "syncs": .int(Int64(space.syncs)),
                "faults": .object(faults), "recent-faults": .array(recent),
                "persistent": .bool(device.persistent),
            ]
            object["group"] = device.groupNumber.map { .int(Int64($0)) } ?? .null
            object["vfio-user"] = vfioUserServers[sid].map { vfioUserStatus($0) } ?? .null
            object["dma-available"] = ((try? device.backend.limits())?.dmaAvailable).map { .int(Int64($0)) } ?? .null
            deviceList.append(.object(object))
        }
        var failed: [JSONValue] = []
        for (sid, why) in failedDevices.sorted(by: { $0.key < $1.key }) {
            failed.append(.object(["guest": .string(sid.description), "error": .string(why)]))
        }
        let stageObject: JSONValue = .object([
            "requests": .int(Int64(stages.requests)), "receive-ns": .int(stages.receive), "walk-ns": .int(stages.walk),
            "ioctl-ns": .int(stages.ioctl), "ack-ns": .int(stages.ack),
        ])
        return .object([
            "name": .string(config.name), "version": .string(version), "pid": .int(Int64(getpid())), "backend": .string(config.backend.rawValue),
            "vmm": .object(vmmObject), "devices": .array(deviceList), "failed-devices": .array(failed),
            "restart": adoptionJSON,
            "stages": stageObject,
            "last-reload": lastReload?.json ?? .null,
        ])
    }
}
