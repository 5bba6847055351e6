import CPosix
import Glibc
import Posix
import UnixIO
import VTd

/// A client of QEMU's qtest line protocol (QEMU's softmmu/qtest.c; system/qtest.c from QEMU 8.2 on): one
/// command per line, one reply line per command, "OK [VALUE]" on success.
/// QEMU may also send "IRQ raise N" / "IRQ lower N" lines at any time once a
/// client intercepts IRQs; they are skipped.
///
/// It plays a guest CPU without one: loads and stores of guest-physical
/// memory and MMIO (`read*`/`write*`, `read`/`write` for byte strings), port
/// I/O (`in*`/`out*`, which is how PCI configuration space is reached through
/// 0xcf8/0xcfc) and, under `-accel qtest` only, the virtual clock.
///
/// QEMU handles a command to completion before it answers: an MMIO store
/// that makes QEMU's IOMMU notify a vfio-user server answers only after the
/// server has replied. Each command's round trip is timed (`lastLatency`),
/// so a caller can record the guest-visible cost of one register write.
///
/// QEMU asserts (and aborts) on arguments it cannot parse and on a zero-length
/// `read`; every typed call here sends only well-formed commands.
final class QTestClient {
    let connection: UnixConnection
    /// How long one command may take before the client gives up on QEMU.
    let timeout: Duration
    /// Describes the other end when the connection breaks (how QEMU exited,
    /// its last log lines); set by whoever started QEMU.
    var describePeer: () -> String = { "" }
    /// Round-trip time of the last command (send to reply).
    private(set) var lastLatency: Duration = .zero
    /// Commands sent so far.
    private(set) var commandCount = 0
    /// Bytes received after the last complete line.
    private var pending: [UInt8] = []

    init(connection: UnixConnection, timeout: Duration = .seconds(30)) throws(QTestError) {
        self.connection = connection
        self.timeout = timeout
        do {
            try connection.setNonBlocking(true)
        } catch {
            throw QTestError(command: "(connect)", answer: nil, cause: .socket(error), hint: "cannot use the qtest socket")
        }
    }

    /// Connects to a QEMU started with `-qtest unix:PATH,server=on,wait=off`.
    static func connect(path: String, timeout: Duration = .seconds(30)) throws(QTestError) -> QTestClient {
        let connection: UnixConnection
        do {
            connection = try UnixConnection.connect(path: path)
        } catch {
            throw QTestError(command: "(connect \(path))", answer: nil, cause: .socket(error),
                             hint: "start QEMU with -qtest unix:\(path),server=on,wait=off first")
        }
        return try QTestClient(connection: connection, timeout: timeout)
    }

    func close() { connection.close() }

    // MARK: the line protocol

    /// Sends one command and returns what follows "OK" in the reply (empty
    /// for commands that return nothing).
    @discardableResult
    func command(_ line: String) throws(QTestError) -> String {
        precondition(!line.contains("\n"), "a qtest command is one line")
        let shown = line.count > 96 ? String(line.prefix(96)) + "…" : line
        commandCount += 1
        let start = ContinuousClock.now
        do {
            try connection.sendAll(Array((line + "\n").utf8))
        } catch {
            throw broken(shown, cause: error.errno == EPIPE || error.errno == ECONNRESET ? .closed : .socket(error))
        }
        while true {
            let reply = try readLine(for: shown, deadline: start + timeout)
            // Asynchronous IRQ notifications may come before the reply.
            if reply.hasPrefix("IRQ ") { continue }
            lastLatency = start.duration(to: .now)
            if reply == "OK" { return "" }
            if reply.hasPrefix("OK ") { return String(reply.dropFirst(3)) }
            throw QTestError(command: shown, answer: reply, cause: .refused,
                             hint: QTestError.hint(forRefusal: reply, command: line))
        }
    }

    private func readLine(for command: String, deadline: ContinuousClock.Instant) throws(QTestError) -> String {
        var scratch = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { throw broken(command, cause: .timeout(timeout)) }
            var entry = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            do {
                let ready = try withUnsafeMutablePointer(to: &entry) { pointer throws(SystemError) in
                    try Poll.wait(UnsafeMutableBufferPointer(start: pointer, count: 1)) {
                        let left = ContinuousClock.now.duration(to: deadline)
                        return left <= .zero ? 0 : Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                    }
                }
                if ready == 0 { continue }
                let result = try scratch.withUnsafeMutableBytes { raw throws(SystemError) in try connection.receive(into: raw) }
                switch result {
                case .data(let count, _): pending += scratch[..<count]
                case .wouldBlock: continue
                case .closed: throw broken(command, cause: .closed)
                }
            } catch let error as QTestError {
                throw error
            } catch let error as SystemError {
                throw broken(command, cause: error.errno == ECONNRESET ? .closed : .socket(error))
            } catch {
                preconditionFailure("unexpected error \(error)")
            }
        }
    }

    private func broken(_ command: String, cause: QTestError.Cause) -> QTestError {
        var hint: String
        switch cause {
        case .timeout:
            hint = "QEMU is stuck in the command; a vfio-user server that does not reply blocks it for up to x-msg-timeout (5 s) per message"
        case .closed:
            hint = "QEMU exited or was killed"
        default:
            hint = "the qtest socket failed"
        }
        let peer = describePeer()
        if !peer.isEmpty { hint += "; \(peer)" }
        return QTestError(command: command, answer: nil, cause: cause, hint: hint)
    }

    // MARK: values

    private func value(_ line: String) throws(QTestError) -> UInt64 {
        let reply = try command(line)
        let digits = reply.hasPrefix("0x") ? reply.dropFirst(2) : Substring(reply)
        guard let v = UInt64(digits, radix: 16) else {
            throw QTestError(command: line, answer: "OK " + reply, cause: .malformedReply, hint: "expected a hexadecimal value")
        }
        return v
    }

    // MARK: memory and MMIO (guest-physical addresses, as the CPU sees them)

    func readb(_ address: UInt64) throws(QTestError) -> UInt8 { UInt8(truncatingIfNeeded: try value("readb \(hex(address))")) }
    func readw(_ address: UInt64) throws(QTestError) -> UInt16 { UInt16(truncatingIfNeeded: try value("readw \(hex(address))")) }
    func readl(_ address: UInt64) throws(QTestError) -> UInt32 { UInt32(truncatingIfNeeded: try value("readl \(hex(address))")) }
    func readq(_ address: UInt64) throws(QTestError) -> UInt64 { try value("readq \(hex(address))") }

    /// Each store returns its round-trip time: for a register whose write
    /// makes QEMU do work (a queue tail, a command register), the time the
    /// guest's vCPU would have been stuck in that store.
    @discardableResult
    func writeb(_ address: UInt64, _ v: UInt8) throws(QTestError) -> Duration { try store("writeb", address, UInt64(v)) }
    @discardableResult
    func writew(_ address: UInt64, _ v: UInt16) throws(QTestError) -> Duration { try store("writew", address, UInt64(v)) }
    @discardableResult
    func writel(_ address: UInt64, _ v: UInt32) throws(QTestError) -> Duration { try store("writel", address, UInt64(v)) }
    @discardableResult
    func writeq(_ address: UInt64, _ v: UInt64) throws(QTestError) -> Duration { try store("writeq", address, v) }

    private func store(_ verb: String, _ address: UInt64, _ v: UInt64) throws(QTestError) -> Duration {
        try command("\(verb) \(hex(address)) \(hex(v))")
        return lastLatency
    }

    /// `count` bytes of guest memory ("read ADDR SIZE", hex reply).
    func read(_ address: UInt64, count: Int) throws(QTestError) -> [UInt8] {
        precondition(count > 0, "QEMU asserts on a zero-length qtest read")
        let line = "read \(hex(address)) \(count)"
        let reply = try command(line)
        let digits = Array(reply.utf8.dropFirst(2))
        guard reply.hasPrefix("0x"), digits.count == 2 * count else {
            throw QTestError(command: line, answer: "OK " + String(reply.prefix(40)), cause: .malformedReply,
                             hint: "expected 0x and \(2 * count) hex digits")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            guard let hi = Self.nibble(digits[2 * i]), let lo = Self.nibble(digits[2 * i + 1]) else {
                throw QTestError(command: line, answer: "OK " + String(reply.prefix(40)), cause: .malformedReply, hint: "not hexadecimal")
            }
            bytes[i] = hi << 4 | lo
        }
        return bytes
    }

    /// Stores `bytes` into guest memory ("write ADDR SIZE 0xHEX").
    func write(_ address: UInt64, _ bytes: [UInt8]) throws(QTestError) {
        precondition(!bytes.isEmpty, "nothing to write")
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(2 * bytes.count + 2)
        text += Array("0x".utf8)
        for b in bytes {
            text.append(digits[Int(b >> 4)])
            text.append(digits[Int(b & 0xf)])
        }
        try command("write \(hex(address)) \(bytes.count) \(String(decoding: text, as: UTF8.self))")
    }

    /// Fills `count` bytes with `value` ("memset").
    func memset(_ address: UInt64, count: Int, value: UInt8) throws(QTestError) {
        try command("memset \(hex(address)) \(count) \(hex(UInt64(value)))")
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    // MARK: port I/O

    func outb(_ port: UInt16, _ v: UInt8) throws(QTestError) { try command("outb \(hex(UInt64(port))) \(hex(UInt64(v)))") }
    func outw(_ port: UInt16, _ v: UInt16) throws(QTestError) { try command("outw \(hex(UInt64(port))) \(hex(UInt64(v)))") }
    func outl(_ port: UInt16, _ v: UInt32) throws(QTestError) { try command("outl \(hex(UInt64(port))) \(hex(UInt64(v)))") }
    func inb(_ port: UInt16) throws(QTestError) -> UInt8 { UInt8(truncatingIfNeeded: try value("inb \(hex(UInt64(port)))")) }
    func inw(_ port: UInt16) throws(QTestError) -> UInt16 { UInt16(truncatingIfNeeded: try value("inw \(hex(UInt64(port)))")) }
    func inl(_ port: UInt16) throws(QTestError) -> UInt32 { UInt32(truncatingIfNeeded: try value("inl \(hex(UInt64(port)))")) }

    // MARK: virtual time (-accel qtest only)

    /// Advances QEMU's virtual clock by `nanoseconds`, or to the next timer
    /// deadline when nil; returns the clock afterwards (ns).
    @discardableResult
    func clockStep(_ nanoseconds: UInt64? = nil) throws(QTestError) -> Int64 {
        let line = nanoseconds.map { "clock_step \($0)" } ?? "clock_step"
        let reply = try command(line)
        guard let now = Int64(reply) else {
            throw QTestError(command: line, answer: "OK " + reply, cause: .malformedReply, hint: "expected the clock in ns")
        }
        return now
    }

    /// Whether this QEMU lets the client drive its virtual clock (it does
    /// under -accel qtest; under TCG or KVM virtual time follows the host).
    /// The probe steps 1 ns: recent QEMUs answer a step of 0 with "FAIL
    /// could not advance time".
    func controlsClock() throws(QTestError) -> Bool {
        do {
            try clockStep(1)
            return true
        } catch where error.answer?.hasPrefix("FAIL Unknown command") == true {
            return false
        }
    }
}
