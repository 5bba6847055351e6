/// UTF-8 helpers shared by both protocols, without Foundation.
enum UTF8Text {
    /// The offset of the first byte that does not start or continue a
    /// well-formed UTF-8 sequence (Unicode 15, table 3-7: no overlong forms,
    /// no surrogates, nothing above U+10FFFF), or nil if all of it is valid.
    static func firstInvalidOffset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            let length: Int
            var lower: UInt8 = 0x80, upper: UInt8 = 0xbf
            switch b0 {
            case 0xc2 ... 0xdf: length = 2
            case 0xe0: length = 3; lower = 0xa0
            case 0xe1 ... 0xec, 0xee ... 0xef: length = 3
            case 0xed: length = 3; upper = 0x9f
            case 0xf0: length = 4; lower = 0x90
            case 0xf1 ... 0xf3: length = 4
            case 0xf4: length = 4; upper = 0x8f
            default: return i
            }
            guard i + length <= n else { return i }
            let b1 = bytes[i + 1]
            guard b1 >= lower, b1 <= upper else { return i }
            var k = 2
            while k < length {
                guard bytes[i + k] & 0xc0 == 0x80 else { return i }
                k += 1
            }
            i += length
        }
        return nil
    }

    static func firstInvalidOffset(_ raw: UnsafeRawBufferPointer) -> Int? {
        firstInvalidOffset(raw.bindMemory(to: UInt8.self))
    }

    /// The string, when `raw` is well-formed UTF-8.
    static func decode(_ raw: UnsafeRawBufferPointer) -> String? {
        guard firstInvalidOffset(raw) == nil else { return nil }
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
