/// Little-endian loads and stores for the event channel (PROTOCOL.md §1.2:
/// every integer is little-endian, with no padding between fields).
///
/// This is the codec's hot path, so it works on raw bytes with unaligned
/// loads rather than through Foundation: a frame's fields sit at arbitrary
/// offsets in the receive buffer.
struct LittleEndianReader {
    let bytes: UnsafeRawBufferPointer

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var count: Int { bytes.count }

    // Callers check the payload length before reading; the loads themselves
    // are bounds-checked only in debug builds, as UnsafeRawBufferPointer is.
    func u8(_ offset: Int) -> UInt8 { bytes[offset] }
    func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    func i32(_ offset: Int) -> Int32 { Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }

    /// The bytes `offset ..< offset + length`, which the caller has bounds-checked.
    func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + length])
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order (PROTOCOL.md §1.2).
    @inline(__always)
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes: the reserved fields of §1.6, which must be 0.
    @inline(__always)
    mutating func appendZeros(_ count: Int) {
        append(contentsOf: repeatElement(0, count: count))
    }
}
