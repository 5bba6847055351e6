/// The result of one batch of invalidation descriptors or notifier entries.
public struct BatchResult: Sendable, Equatable {
    /// Everything the batch did in the kernel.
    public var report = SyncReport()
    /// Wait descriptors reached; each is a completion point the VMM may signal
    /// to the guest once this result is in hand.
    public var waits = 0
    /// The first descriptor (or notifier entry) refused, if any. Like hardware
    /// on an invalidation queue error (spec 6.5.2.10), nothing from it onwards
    /// was executed.
    public var rejected: Rejection?

    public struct Rejection: Sendable, Equatable {
        public var index: Int
        public var reason: String
    }

    public init() {}
}
