import Foundation
import Glibc
import UnixIO

/// The daemon as systemd runs it (`vtdbridged@NAME`), seen from the
/// simulating VMM, which is not root: it cannot run systemctl, so it asks a
/// root helper through two FIFOs (scripts/vm/systemd-restarts.sh creates
/// them, mode 0620/0640, group kvm). One request line, one reply line:
///
///     kill      → systemctl kill -s KILL vtdbridged@NAME   (a crash)
///     sigkill P → kill -KILL P, P the daemon's pid (a crash at a chosen
///                 moment: systemctl takes too long to start under TCG to
///                 land inside a batch)
///     restart   → systemctl restart vtdbridged@NAME        (a hand-over)
///     upgrade   → a new binary installed, then restart
///     exe       → the inodes of the running daemon's executable and of the
///                 installed file
///     stop      → systemctl stop vtdbridged@NAME
///
/// The reply is "ok T …" with T the CLOCK_REALTIME (ns) just after the kill
/// was sent or the restart job queued (before the action for exe and stop),
/// or "error TEXT".
final class SystemdUnitHandle {
    let name: String
    let controlDirectory: String
    var eventSocket: String { "/run/vtd-bridge/\(name)/event.sock" }
    var controlSocket: String { "/run/vtd-bridge/\(name)/control.sock" }

    init(name: String, controlDirectory: String) {
        self.name = name
        self.controlDirectory = controlDirectory
    }

    enum Action: String {
        case kill, sigkill, restart, upgrade, exe, stop
    }

    struct Reply {
        /// CLOCK_REALTIME in ns, taken by the helper just before the action.
        var startedAt: Int64
        var fields: [String]
    }

    /// Asks the root helper to act on the unit and waits for its answer.
    @discardableResult
    func perform(_ action: Action, _ argument: String? = nil) throws -> Reply {
        let request = controlDirectory + "/request"
        let reply = controlDirectory + "/reply"
        let w = open(request, O_WRONLY | O_CLOEXEC)
        guard w >= 0 else { throw SimError("opening \(request): \(String(cString: strerror(errno)))") }
        let line = Array((action.rawValue + (argument.map { " " + $0 } ?? "") + "\n").utf8)
        let written = line.withUnsafeBytes { write(w, $0.baseAddress, $0.count) }
        close(w)
        guard written == line.count else { throw SimError("writing to \(request) failed") }
        let r = open(reply, O_RDONLY | O_CLOEXEC)
        guard r >= 0 else { throw SimError("opening \(reply): \(String(cString: strerror(errno)))") }
        defer { close(r) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !bytes.contains(10) {
            let n = read(r, &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer[..<n]
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let fields = text.split(separator: " ").map(String.init)
        guard fields.first == "ok", fields.count >= 2, let at = Int64(fields[1]) else {
            throw SimError("the unit helper answered '\(text)' to \(action.rawValue)")
        }
        return Reply(startedAt: at, fields: Array(fields.dropFirst(2)))
    }

    /// Waits until the daemon answers on its control socket.
    func waitUntilServing(timeout: Duration = .seconds(30)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let c = try? UnixConnection.connect(path: controlSocket) {
                c.close()
                return
            }
            usleep(20_000)
        }
        throw SimError("vtdbridged@\(name) did not listen on \(controlSocket) within \(timeout)")
    }
}
