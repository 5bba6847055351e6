/// The numeric limits of the event channel, in one place (PROTOCOL.md §1.2,
/// §1.3, §1.4, §1.6). The codec enforces them; the daemon reports them.
public enum EventLimits {
    /// The one protocol version (`HELLO.version`, §1.6).
    public static let protocolVersion: UInt32 = 1
    /// Largest payload of a frame (§1.2).
    public static let maxPayload = 1_048_576
    /// Most descriptors per frame (§1.3).
    public static let maxFDsPerFrame = 64
    /// `SET_MEM_TABLE` region count range (§1.6).
    public static let memoryRegions = 1 ... 64
    /// `INVALIDATE` descriptor count range (§1.6). Note that 8 + 16·65,536 is
    /// 8 bytes above `maxPayload`, so a frame holds at most 65,535 in practice.
    public static let invalidations = 1 ... 65_535
    /// `NOTIFY` entry count range (§1.6). As above, 8 + 32·32,768 exceeds
    /// `maxPayload` by 8 bytes: at most 32,767 fit in a frame.
    public static let notifierEntries = 1 ... 32_767
    /// Longest reply `message` in bytes (§1.4).
    public static let maxMessageBytes = 4096
    /// Longest failure-record `reason` in bytes (§1.6).
    public static let maxReasonBytes = 1024
    /// Most failure records in one batch result (§1.6).
    public static let maxFailureRecords = 64
    /// Regions, region offsets and notifier ranges are in 4 KiB units (§1.6).
    public static let pageSize: UInt64 = 4096
}
