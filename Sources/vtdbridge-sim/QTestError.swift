import Posix

/// A qtest command that did not do what it was asked, as a value: the
/// command, what QEMU answered (if anything), why that is a failure, and
/// what to do about it.
///
/// QEMU's qtest server answers "OK [VALUE]" on success, "FAIL ..." for a
/// command it does not know (or knows only under the qtest accelerator) and
/// "ERR ..." for a malformed argument it checks; anything else it asserts on
/// and aborts, so the client never sends what QEMU would assert on.
struct QTestError: Error, CustomStringConvertible {
    enum Cause {
        /// QEMU answered, but not "OK".
        case refused
        /// QEMU answered "OK" with something that is not the value asked for.
        case malformedReply
        /// The socket failed (a system call error).
        case socket(SystemError)
        /// QEMU closed the qtest connection: it exited or was killed.
        case closed
        /// No answer within the client's timeout.
        case timeout(Duration)
    }

    /// The command line sent, without its newline (long data shortened).
    var command: String
    /// QEMU's reply line, if one came.
    var answer: String?
    var cause: Cause
    /// What to do: the likely reason and the next step.
    var hint: String

    var description: String {
        var text = "qtest \"\(command)\": "
        switch cause {
        case .refused: text += "QEMU answered \"\(answer ?? "")\""
        case .malformedReply: text += "QEMU answered \"\(answer ?? "")\", which is not the value asked for"
        case .socket(let error): text += "\(error)"
        case .closed: text += "QEMU closed the qtest connection"
        case .timeout(let limit): text += "no answer within \(limit)"
        }
        if !hint.isEmpty { text += " (\(hint))" }
        return text
    }

    /// The hint for a refusal, from what QEMU is known to answer.
    static func hint(forRefusal answer: String, command: String) -> String {
        if answer.hasPrefix("FAIL Unknown command 'clock_step'") || answer.hasPrefix("FAIL Unknown command 'clock_set'") {
            return "QEMU steps its clock for qtest only under -accel qtest; with another accelerator virtual time runs by itself"
        }
        if answer.hasPrefix("FAIL Unknown command") {
            return "this QEMU's qtest server does not know the command; check the QEMU version"
        }
        if answer.hasPrefix("ERR") {
            return "QEMU refused the command's arguments; this is a bug in the qtest client"
        }
        return "unexpected qtest answer"
    }
}
