/// `0x…`, for addresses and register values in messages: they read best in
/// hex, as the guest and the VT-d spec write them. The one such helper for
/// every target above VTd (VFIO, Wire, Bridge, the daemon, the tools).
public func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

/// The hex digits of `value`, zero-padded to `width`, without a prefix: the
/// fixed-width fields of PCI addresses ("0000:02:00.0") and source-ids
/// ("00:03.0"), and 64-bit halves printed side by side.
public func hexDigits<T: BinaryInteger>(_ value: T, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
