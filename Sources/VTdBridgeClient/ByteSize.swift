/// How vtdbridgectl prints a size, in every command: exact, in binary units
/// ("4 KiB", "2 MiB", "1.5 GiB", "2052 KiB", "100 B"). The largest unit in
/// which the value has at most two decimals without rounding, so a printed
/// size is always the real one: mappings are page multiples, and a total of
/// 2 MiB + 4 KiB must not read as "2 MiB". The JSON replies keep their own
/// encoding (hex strings and integers); this is only for people.
public enum ByteSize {
    static let units: [(name: String, shift: UInt64)] = [("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]

    public static func text(_ bytes: UInt64) -> String {
        for unit in units {
            let whole = bytes >> unit.shift
            guard whole > 0 else { continue }
            let mask: UInt64 = (1 << unit.shift) - 1
            let remainder = bytes & mask
            // Hundredths of the unit, exactly: remainder·100 must be a
            // multiple of 2^shift. The product can exceed 64 bits (remainder
            // is below 2^60), hence the full-width multiply.
            let product = remainder.multipliedFullWidth(by: 100)
            guard product.low & mask == 0 else { continue }
            let hundredths = (product.high << (64 - unit.shift)) | (product.low >> unit.shift)
            return "\(whole)\(fraction(hundredths)) \(unit.name)"
        }
        return "\(bytes) B"
    }

    /// ".5" for 50, ".25" for 25, "" for 0.
    static func fraction(_ hundredths: UInt64) -> String {
        if hundredths == 0 { return "" }
        if hundredths % 10 == 0 { return ".\(hundredths / 10)" }
        return hundredths < 10 ? ".0\(hundredths)" : ".\(hundredths)"
    }
}
