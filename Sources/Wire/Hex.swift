/// `0x…` formatting for messages: addresses read best in hex, as the guest
/// and the VT-d spec write them.
@inline(__always)
func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
