import CPosix

/// Process resource limits, as far as this project reads them.
public enum ResourceLimits {
    /// RLIMIT_MEMLOCK (soft, hard) in bytes, UInt64.max for unlimited; nil
    /// when it cannot be read. VFIO type1 charges every pinned page to it.
    public static func memoryLock() -> (soft: UInt64, hard: UInt64)? {
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        return cposix_memlock_limit(&soft, &hard) == 0 ? (soft, hard) : nil
    }
}
