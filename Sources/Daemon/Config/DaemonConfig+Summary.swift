extension DaemonConfig {
    /// One line for `vtdbridged --check-config`: what this configuration
    /// would run.
    public var summary: String {
        let quota = mappingQuota.map { "\($0)" } ?? "none"
        return "name \(name), backend \(backend.rawValue), \(devices.count) device(s)"
            + (devices.isEmpty ? "" : " (\(devices.map(\.description).joined(separator: " ")))")
            + ", event socket \(eventSocket), control socket \(controlSocket), state directory \(stateDirectory)"
            + ", log level \(logLevel.rawValue), mapping quota \(quota)"
    }
}
