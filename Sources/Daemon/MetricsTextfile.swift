import Glibc
import Posix

/// The metrics file for node_exporter's textfile collector (config keys
/// metrics.textfile and metrics.interval; docs/CONFIG.md, "Metrics").
///
/// The unit runs with PrivateNetwork=yes, so the daemon cannot serve HTTP
/// to a Prometheus server; node_exporter's textfile collector instead reads
/// every `*.prom` file of one directory at each scrape. Its convention,
/// followed here: write the whole text to a file the collector does not
/// read (`<path>.tmp`), then rename(2) it over `<path>`, so that a scrape
/// sees the previous file or the next one, never half of one.
struct MetricsTextfile {
    let path: String
    let interval: Duration
    /// When the next write is due; the first is right after start.
    private(set) var due: ContinuousClock.Instant
    /// The last write failed: the next failure is not logged again (one
    /// line per outage, not one per interval), and a success is.
    var failing = false

    init(path: String, intervalSeconds: Int, now: ContinuousClock.Instant = .now) {
        self.path = path
        self.interval = .seconds(intervalSeconds)
        self.due = now
    }

    var temporaryPath: String { path + ".tmp" }

    /// Writes `text` and schedules the next write one interval from now.
    /// No fsync: a file lost in a crash is rewritten within one interval by
    /// the next process, and flushing every few seconds would only cost.
    mutating func write(_ text: String, now: ContinuousClock.Instant = .now) throws(SystemError) {
        due = now + interval
        let temporary = temporaryPath
        do {
            // On an error the descriptor closes as `file` goes away.
            let file = try FileDescriptor.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            try file.writeAll(Array(text.utf8))
            try file.close()
            // The unit's UMask=0077 would leave the file 0600, unreadable to
            // node_exporter (its own user, prometheus on Debian): the mode
            // is set explicitly, as for the sockets.
            try FileSystem.setPermissions(temporary, 0o644)
            try FileSystem.rename(temporary, to: path)
        } catch {
            // Leave no stale .tmp behind; the previous file stays as it was.
            _ = try? FileSystem.remove(temporary)
            throw error
        }
    }
}
