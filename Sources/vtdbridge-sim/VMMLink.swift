import Foundation
import Bridge
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

/// The simulator's VMM half: it feeds the daemon's event channel exactly as
/// a VMM with an emulated VT-d unit would, and its operator half talks to
/// the control socket.
final class VMMLink {
    let eventPath: String
    var events: EventClient
    let guest: SimulatedGuest
    let transcript: Transcript

    init(eventPath: String, guest: SimulatedGuest, transcript: Transcript) throws {
        self.eventPath = eventPath
        self.guest = guest
        self.transcript = transcript
        events = try EventClient(path: eventPath)
    }

    /// HELLO, the memory table (the memfd by SCM_RIGHTS), the root table,
    /// translation on, READY: the state a VMM sends on every (re)connect.
    /// With `flags` `.notifierMode` it is the handshake of a VMM that walks
    /// the tables itself (PROTOCOL.md §1.6): no root table, since the daemon
    /// reads none, and NOTIFY after READY in place of INVALIDATE.
    func handshake(translation: Bool = true, flags: HelloFlags = []) throws {
        let hello = try events.require(.hello(version: 1, flags: flags.rawValue, cap: guest.caps.cap, ecap: guest.caps.ecap))
        if case let .hello(_, _, devices) = hello.body {
            transcript.vmm("HELLO\(flags.contains(.notifierMode) ? " (notifier mode)" : "") accepted; the daemon has \(devices) device(s) attached")
        }
        try events.require(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: guest.ramSize, offset: 0)]), fds: [guest.memfd])
        transcript.vmm("guest RAM: \(guest.ramSize >> 20) MiB memfd sent with SET_MEM_TABLE")
        if !flags.contains(.notifierMode) { try events.require(.setRootTable(guest.rootTable)) }
        try events.require(.setTranslation(translation))
        let ready = try events.request(.ready)
        guard ready.status == .ok else { throw SimError("READY: \(ready.status.name): \(ready.message)") }
        let tables = flags.contains(.notifierMode) ? "no root table (notifier mode)" : "root table 0x\(String(guest.rootTable, radix: 16))"
        transcript.vmm("\(tables), translation \(translation ? "on" : "off"), READY")
    }

    /// Drops the connection and makes a new one (a VMM restart).
    func reconnect() throws {
        events.close()
        events = try EventClient(path: eventPath)
        try handshake()
    }

    /// Sends one batch ending in a wait descriptor; returns the batch result.
    @discardableResult
    func deliver(_ descriptors: [InvalidationDescriptor]) throws -> BatchResultBody {
        try deliver(words: (descriptors + [GuestTableWriter<GuestRAM>.wait]).map { d in
            let (low, high) = d.encoded
            return InvalidationWords(low: low, high: high)
        })
    }

    /// Sends descriptors already encoded (the caller ends them with a wait).
    @discardableResult
    func deliver(words: [InvalidationWords]) throws -> BatchResultBody {
        let reply = try events.request(.invalidate(words))
        guard case let .batch(body) = reply.body else { throw SimError("INVALIDATE reply without a batch result") }
        guard reply.status == .ok else { throw SimError("INVALIDATE: \(reply.status.name): \(reply.message)") }
        return body
    }

    /// Sends one NOTIFY (notifier mode); returns the batch result.
    @discardableResult
    func notify(_ entries: [NotifierEntry]) throws -> BatchResultBody {
        let reply = try events.request(.notify(entries))
        guard case let .batch(body) = reply.body else { throw SimError("NOTIFY reply without a batch result") }
        guard reply.status == .ok else { throw SimError("NOTIFY: \(reply.status.name): \(reply.message)") }
        return body
    }
}

struct SimError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The readable record of a run: what the guest did, what the VMM sent, what
/// the daemon did, what was checked.
final class Transcript {
    let quiet: Bool
    init(quiet: Bool) { self.quiet = quiet }
    func line(_ who: String, _ text: String) {
        guard !quiet else { return }
        print("\(who.padding(toLength: 8, withPad: " ", startingAt: 0))\(text)")
    }
    func guest(_ t: String) { line("guest", t) }
    func vmm(_ t: String) { line("vmm", t) }
    func daemon(_ t: String) { line("daemon", t) }
    func check(_ t: String) { line("check", t) }
    func title(_ t: String) { if !quiet { print("\n== \(t)") } }
    /// Rows under a header, columns right-aligned but the first, indented
    /// under the text of the line before.
    func table(_ header: [String], _ rows: [[String]]) {
        guard !quiet else { return }
        let all = [header] + rows
        let widths = header.indices.map { c in all.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { c, text in
                let pad = String(repeating: " ", count: max(0, widths[c] - text.count))
                return c == 0 ? text + pad : pad + text
            }
            print(String(repeating: " ", count: 10) + cells.joined(separator: "  "))
        }
    }
}

