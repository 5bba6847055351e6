import Wire
import VTdBridgeClient

/// The text of one device's translation, from the JSON that both
/// `mappings` (the daemon's shadow) and `walk` (a walk of guest RAM) produce
/// (PROTOCOL.md §2.3, `mappings`): one renderer, so the two commands print
/// the same table for the same translation.
enum TranslationText {
    static func render(_ r: JSONValue, device fallback: String) -> String {
        var out = "device \(r["device"]?.stringValue ?? fallback): \(r["mode"]?.stringValue ?? "?")"
        if let d = r["domain"]?.intValue { out += ", domain \(d)" }
        if let l = r["levels"]?.intValue { out += ", \(l)-level" }
        let maps = r["mappings"]?.arrayValue ?? []
        let sizes = maps.map { address($0["size"]) ?? 0 }
        out += "\n\(maps.count) mapping(s), \(ByteSize.text(sizes.reduce(0, &+)))\n"
        if !maps.isEmpty {
            var rows = [["IOVA", "GPA", "SIZE", "PERM"]]
            for (m, size) in zip(maps, sizes) {
                rows.append([m["iova"]?.stringValue ?? "?", m["gpa"]?.stringValue ?? "-", ByteSize.text(size),
                             (m["read"]?.boolValue == true ? "r" : "-") + (m["write"]?.boolValue == true ? "w" : "-")])
            }
            out += table(rows)
        }
        let faults = r["faults"]?.arrayValue ?? []
        if !faults.isEmpty {
            out += "\(faults.count) fault(s):\n"
            for f in faults {
                out += "  \(f["reason"]?.stringValue ?? "?")"
                if let iova = f["iova"]?.stringValue { out += " iova=\(iova)" }
                if let level = f["level"]?.intValue { out += " level=\(level)" }
                if let value = f["value"]?.stringValue { out += " value=\(value)" }
                if let detail = f["detail"]?.stringValue, !detail.isEmpty { out += ": \(detail)" }
                out += "\n"
            }
        }
        return out
    }

    /// A "0x…" address or size of the JSON.
    static func address(_ value: JSONValue?) -> UInt64? {
        guard let text = value?.stringValue, text.hasPrefix("0x") else { return nil }
        return UInt64(text.dropFirst(2), radix: 16)
    }
}
