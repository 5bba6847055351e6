import VTd

/// The translation of one device as the daemon establishes it: the shadow's
/// mappings and the faults met. `vtdbridgectl walk` prints it, and the
/// daemon's `mappings` command answers with the same JSON.
public struct TranslationReport: Sendable, Equatable {
    public var device: SourceID
    public var domain: UInt16?
    public var levels: Int?
    /// "translated", "pass-through", "not-present" or "invalid".
    public var mode: String
    public var mappings: [Mapping]
    public var faults: [TranslationFault]

    /// One mapping the kernel holds, with the guest-physical address it
    /// stands for under the current memory table (nil when its host address
    /// lies in no current region: the memory table changed and the next
    /// sync will move it).
    public struct Mapping: Sendable, Equatable {
        public var iova: UInt64
        public var gpa: UInt64?
        public var size: UInt64
        public var permission: DMAPermission
    }

    /// `memory` is the guest RAM the space's host addresses came from; the
    /// shadow keeps only host addresses (what MAP_DMA was given).
    public init(space: AddressSpace, memory: GuestRAM?) {
        device = space.sourceID
        switch space.context {
        case let .translated(did, _, levels):
            domain = did
            self.levels = levels
            mode = "translated"
        case let .passThrough(did):
            domain = did
            mode = "pass-through"
        case .notPresent:
            mode = "not-present"
        case .invalid:
            mode = "invalid"
        }
        mappings = space.shadow.entries.map { e in
            Mapping(iova: e.iova, gpa: memory?.gpa(hostAddress: e.hostAddress, size: e.size), size: e.size, permission: e.permission)
        }
        faults = space.faults.recent
    }

    /// One JSON object, addresses as "0x…" strings:
    /// {"device","domain","levels","mode","mappings":[{"iova","gpa","size","read","write"}],"faults":[…]}
    public var json: String {
        var out = "{\"device\":\"\(device)\""
        out += ",\"domain\":" + (domain.map { String($0) } ?? "null")
        out += ",\"levels\":" + (levels.map { String($0) } ?? "null")
        out += ",\"mode\":\"\(mode)\",\"mappings\":["
        for (i, m) in mappings.enumerated() {
            if i > 0 { out += "," }
            out += "{\"iova\":\"\(hex(m.iova))\",\"gpa\":\(m.gpa.map { "\"\(hex($0))\"" } ?? "null"),\"size\":\"\(hex(m.size))\""
            out += ",\"read\":\(m.permission.contains(.read)),\"write\":\(m.permission.contains(.write))}"
        }
        out += "],\"faults\":["
        for (i, f) in faults.enumerated() {
            if i > 0 { out += "," }
            out += "{\"reason\":\"\(f.reason.rawValue)\""
            out += ",\"iova\":" + (f.iova.map { "\"\(hex($0))\"" } ?? "null")
            out += ",\"level\":" + (f.level.map { String($0) } ?? "null")
            out += ",\"value\":\"\(hex(f.value))\",\"detail\":\(jsonString(f.detail))}"
        }
        return out + "]}"
    }

    /// A table for people.
    public var text: String {
        var out = "device \(device): \(mode)"
        if let domain { out += ", domain \(domain)" }
        if let levels { out += ", \(levels)-level" }
        out += "\n"
        let total = mappings.reduce(UInt64(0)) { $0 + $1.size }
        out += "\(mappings.count) mapping(s), \(total) bytes\n"
        if !mappings.isEmpty {
            out += pad("IOVA", 20) + pad("GPA", 20) + pad("SIZE", 12) + "PERM\n"
            for m in mappings {
                out += pad(hex(m.iova), 20) + pad(m.gpa.map(hex) ?? "-", 20) + pad(sizeText(m.size), 12) + m.permission.description + "\n"
            }
        }
        if !faults.isEmpty {
            out += "\(faults.count) fault(s):\n"
            for f in faults { out += "  \(f)\n" }
        }
        return out
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

func sizeText(_ size: UInt64) -> String {
    if size % (1 << 30) == 0 { return "\(size >> 30)G" }
    if size % (1 << 20) == 0 { return "\(size >> 20)M" }
    if size % (1 << 10) == 0 { return "\(size >> 10)K" }
    return "\(size)"
}

/// A JSON string literal with the escapes RFC 8259 requires.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            let h = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
