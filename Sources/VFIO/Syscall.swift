import Glibc

/// Runs one kernel call that returns a non-negative result or -errno, and
/// turns a failure into a `VFIOError` naming the call.
///
/// This is the only place in the VFIO layer that retries EINTR (the
/// swift-system policy: one helper, not a loop per call site). Pass
/// `retryOnInterrupt: false` for close(2): Linux releases the descriptor even
/// when close reports EINTR, so a retry could close a descriptor that another
/// thread has just been given.
///
/// - Parameters:
///   - operation: the call's name as an operator would search for it, e.g.
///     "VFIO_IOMMU_MAP_DMA" or "open".
///   - subject: what it was done to, e.g. "/dev/vfio/12" or "container /dev/vfio/vfio".
///   - detail: extra context for the error (a range, a device name).
///   - hint: maps the errno to what usually causes it; called only on failure.
@discardableResult
func syscallRetrying<T: FixedWidthInteger & SignedInteger>(
    _ operation: String,
    on subject: @autoclosure () -> String,
    retryOnInterrupt: Bool = true,
    detail: @autoclosure () -> String? = nil,
    hint: (Int32) -> String? = { _ in nil },
    _ body: () -> T
) throws(VFIOError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Int32(truncatingIfNeeded: -result)
        if code == EINTR && retryOnInterrupt { continue }
        throw VFIOError(operation: operation, subject: subject(), errno: code,
                        detail: detail(), hint: hint(code))
    }
}
