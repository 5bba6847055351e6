/// The number syntax of vtdbridgectl's and vtdbridge-sim's options (--ram,
/// --root-table, --cap, --region): hex ("0x…") or decimal, with an
/// optional K/M/G/T suffix in powers of 1024. Both command lines accept the
/// same forms, so the parser lives in the library both link.
public enum CommandLineNumber {
    /// The value of `text`, or nil if it is not a number or overflows 64 bits.
    public static func parse(_ text: String) -> UInt64? {
        var body = Substring(text).trimmingWhitespace()
        var scale: UInt64 = 1
        // K/M/G/T are not hex digits, so a suffix is never mistaken for one.
        if let last = body.last, "KMGTkmgt".contains(last) {
            switch last {
            case "K", "k": scale = 1 << 10
            case "M", "m": scale = 1 << 20
            case "G", "g": scale = 1 << 30
            case "T", "t": scale = 1 << 40
            default: break
            }
            if scale != 1 { body = body.dropLast() }
        }
        let value: UInt64?
        if body.hasPrefix("0x") || body.hasPrefix("0X") {
            value = UInt64(body.dropFirst(2), radix: 16)
        } else {
            value = UInt64(body, radix: 10)
        }
        guard let value else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : product
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return s
    }
}
