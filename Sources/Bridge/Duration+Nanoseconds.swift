extension Duration {
    /// Whole nanoseconds, for the stage timings and latency metrics that
    /// count in nanoseconds. Attoseconds below a nanosecond are dropped.
    public var nanosecondCount: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
