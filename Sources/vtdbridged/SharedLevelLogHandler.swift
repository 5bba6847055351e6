import Logging

/// Wraps the handler that writes (the journal's, or swift-log's stream
/// handler on standard error) so that its level is the process-wide one.
struct SharedLevelLogHandler: LogHandler {
    var inner: any LogHandler
    let level: SharedLogLevel

    var logLevel: Logger.Level {
        get { level.level }
        set { level.setLevel(newValue) }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}
