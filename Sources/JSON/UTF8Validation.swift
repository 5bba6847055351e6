/// Well-formedness of UTF-8 text, checked by hand so that an error can name
/// the offending byte: the JSON parser reports it with its offset, and the
/// control socket's line splitter refuses a line that is not UTF-8.
public enum UTF8Validation {
    /// The offset of the first byte that does not start or continue a
    /// well-formed UTF-8 sequence (Unicode 15, table 3-7: no overlong forms,
    /// no surrogates, nothing above U+10FFFF), or nil if all of it is valid.
    public static func firstInvalidOffset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
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

    public static func firstInvalidOffset(_ raw: UnsafeRawBufferPointer) -> Int? {
        firstInvalidOffset(raw.bindMemory(to: UInt8.self))
    }
}
