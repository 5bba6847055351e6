import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

extension KillSoak {
    // MARK: restart

    /// The daemon is dead; start it and bring the VMM back. Returns what the VMM saw.
    func restart(_ how: SoakReconnect) throws -> String {
        runner.link.events.close()
        if how == .dropFirst { runner.edus.removeAll() }
        try supervisor.start()
        runner.control = try ControlClient(path: supervisor.controlSocket)
        var note = how.rawValue
        switch how {
        case .dropFirst:
            let already = try attachBoth()
            try reconnect()
            note += ", \(already) of \(domains.count) restored by the daemon"
        case .holdFDs:
            let attachedAtHello = try reconnect()
            // Now the VMM lets go of the dead daemon's groups.
            runner.edus.removeAll()
            let already = try attachBoth()
            note += ", \(attachedAtHello) attached at HELLO, \(already) by the daemon's retry"
        }
        return note
    }

    /// HELLO … READY on a new connection; returns the device count HELLO reported.
    @discardableResult
    func reconnect() throws -> Int {
        let link = try VMMLink(eventPath: supervisor.eventSocket, guest: guest, transcript: quiet)
        runner.link = link
        let hello = try link.events.require(.hello(version: 1, flags: 0, cap: guest.caps.cap, ecap: guest.caps.ecap))
        var devices = -1
        if case let .hello(_, _, n) = hello.body { devices = Int(n) }
        try link.events.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: guest.ramSize, offset: 0)]), fds: [guest.memfd])
        try link.events.require(.setRootTable(guest.rootTable))
        try link.events.require(.setTranslation(true))
        let t = ContinuousClock.now
        let ready = try link.events.request(.ready)
        guard ready.status == .ok else { throw SimError("READY after the restart: \(ready.status.name): \(ready.message)") }
        let leaves = domains.reduce(0) { $0 + guest.expected($1.sid).count }
        if devices == domains.count && leaves >= 16 {
            microsPerLeafAtReady = 0.5 * microsPerLeafAtReady + 0.5 * seconds(t.duration(to: .now)) * 1e6 / Double(leaves)
        }
        return devices
    }

    /// Asks for both device fds, retrying while the groups are still held
    /// (EBUSY until the last fd of the dead daemon's group is gone). Returns
    /// how many the daemon had attached already (restored or retried).
    @discardableResult
    func attachBoth() throws -> Int {
        runner.edus.removeAll()
        var already = 0
        for (i, (sid, _)) in domains.enumerated() {
            let host = runner.eduAddresses[i]
            var attempts = 0
            while true {
                let (result, fd) = try runner.control.call("attach", ["host": .string(host), "guest": .string(sid.description), "return-fd": true])
                switch result {
                case let .success(value):
                    guard let fd else { throw SimError("attach \(host) returned no device fd: \(value.serialized)") }
                    runner.edus[sid] = try EduDevice(adopting: fd, address: host)
                    if value["already-attached"]?.boolValue == true { already += 1 }
                case let .failure(error):
                    attempts += 1
                    if attempts > 50 { throw SimError("attach \(host) as \(sid) after the restart: \(error.code): \(error.message) (50 attempts over 10 s)") }
                    usleep(200_000)
                    continue
                }
                break
            }
        }
        return already
    }
}
