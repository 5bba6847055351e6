/// One 128-bit queued-invalidation descriptor of `INVALIDATE` (PROTOCOL.md §1.6),
/// exactly as the guest wrote it. The codec keeps the raw words: decoding them
/// needs the guest's capabilities (`VTd.InvalidationDescriptor.decode`), and a
/// bad one must stop the batch at its index rather than fail the frame.
public struct InvalidationWords: Sendable, Equatable, Hashable {
    /// Bits 63:0.
    public var low: UInt64
    /// Bits 127:64.
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// Bytes per descriptor on the wire.
    static let wireSize = 16
}
