/// Sends a changing status at most once per `interval`, and always its
/// last value.
///
/// The daemon's STATUS= follows every mapping the guest makes; a guest
/// maps thousands per second while it boots, and each STATUS= is a
/// datagram systemd parses and records. So a change is sent at once if
/// nothing was sent for `interval`, and otherwise held: `due` says when
/// the loop must offer the status again, and the value then current is
/// sent (a trailing update), so that what systemd shows ends on the
/// latest state, never on one a burst left behind.
///
/// A class: the event loop reads `due` every round, and as a struct held in
/// the daemon each read copied the whole reporter, its last status string
/// included (issue 14: 13 copies per request).
final class StatusReporter<Status: Equatable> {
    let interval: Duration
    private(set) var sent: Status?
    private var sentAt: ContinuousClock.Instant?
    /// When a held change should be offered again; nil when nothing is held.
    private(set) var due: ContinuousClock.Instant?

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    /// The status to send now, or nil: unchanged since the last one sent,
    /// or held because one was sent less than `interval` ago (then `due`
    /// is set). `now` is evaluated only for a changed status: an unchanged
    /// one costs no clock read.
    func offer(_ status: Status, now nowReading: @autoclosure () -> ContinuousClock.Instant) -> Status? {
        if status == sent {
            due = nil
            return nil
        }
        let now = nowReading()
        if let sentAt, now < sentAt + interval {
            due = sentAt + interval
            return nil
        }
        record(status, at: now)
        return status
    }

    /// `status` went out with another message (READY=1 carries one).
    func record(_ status: Status, at now: ContinuousClock.Instant) {
        sent = status
        sentAt = now
        due = nil
    }
}
