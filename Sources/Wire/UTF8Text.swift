/// UTF-8 helpers shared by both protocols, without Foundation. Validation
/// itself is `UTF8Validation` (target JSON), which the JSON parser shares.
enum UTF8Text {
    /// The string, when `raw` is well-formed UTF-8.
    static func decode(_ raw: UnsafeRawBufferPointer) -> String? {
        guard UTF8Validation.firstInvalidOffset(raw) == nil else { return nil }
        return String(decoding: raw.bindMemory(to: UInt8.self), as: UTF8.self)
    }

    /// `text`'s UTF-8 bytes, cut to at most `limit` bytes at a scalar boundary
    /// so that the result is still valid UTF-8 (§1.4 message ≤ 4096, §1.6
    /// reason ≤ 1024).
    static func truncatedBytes(_ text: String, limit: Int) -> ArraySlice<UInt8> {
        let bytes = Array(text.utf8)
        guard bytes.count > limit else { return bytes[...] }
        var cut = max(0, limit)
        // A continuation byte (10xxxxxx) cannot start a scalar: back up to one that can.
        while cut > 0, bytes[cut] & 0xc0 == 0x80 { cut -= 1 }
        return bytes[..<cut]
    }

    /// `text` cut to at most `limit` UTF-8 bytes at a scalar boundary.
    static func truncated(_ text: String, limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        return String(decoding: truncatedBytes(text, limit: limit), as: UTF8.self)
    }
}
