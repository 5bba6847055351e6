/// Time spent applying syncs' differences — the backend calls (the ioctls)
/// and the shadow edits after each — summed over every address space of one
/// `GuestIOMMU`, for the daemon's per-stage breakdown.
///
/// One object the spaces share, so that the daemon reads two fields around
/// a request instead of summing over every space twice (issue 14).
public final class BackendTiming {
    /// All time spent so far.
    public private(set) var nanoseconds: Int64 = 0
    /// When the last application of a difference ended, as its timing read
    /// it: the daemon ends a request's walk stage there instead of reading
    /// the clock again (a clock read is a syscall under QEMU on hpet).
    public private(set) var lastEnd: ContinuousClock.Instant?

    public init() {}

    func record(from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) {
        nanoseconds += start.duration(to: end).nanosecondCount
        lastEnd = end
    }
}
