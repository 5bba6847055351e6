/// Emitting the metrics: to the control socket's `metrics` command and to
/// the node_exporter textfile.
extension Daemon {
    /// The registry's text, with the per-device gauges brought up to date
    /// first (they are set at emission, not on the request path, where each
    /// would cost a registry lookup).
    func currentMetricsText() -> String {
        refreshDeviceMetrics()
        return metricsText?() ?? ""
    }

    /// Writes metrics.textfile now, if configured, and schedules the next
    /// write. A failure is logged once per outage (the unit's sandbox makes
    /// a directory outside ReadWritePaths= read-only: EROFS), and the
    /// daemon goes on serving.
    func writeMetricsTextfile() {
        guard var textfile = metricsTextfile else { return }
        do {
            try textfile.write(currentMetricsText())
            if textfile.failing {
                logger.notice("metrics textfile written again", metadata: ["path": "\(textfile.path)"])
                textfile.failing = false
            }
        } catch {
            if !textfile.failing {
                logger.error("metrics textfile not written; retrying every interval", metadata: [
                    "path": "\(textfile.path)", "error": "\(error)",
                    "hint": "under the shipped unit the directory must be in ReadWritePaths= (docs/CONFIG.md, \"Metrics\")",
                ])
                textfile.failing = true
            }
        }
        metricsTextfile = textfile
    }
}
