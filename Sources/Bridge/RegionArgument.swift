import Glibc

/// Parsing of the command-line forms of guest RAM regions and addresses.
public enum RegionArgument {
    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// A number in hex ("0x…") or decimal, with an optional K/M/G/T suffix (powers of 1024).
    public static func number(_ text: String) -> UInt64? {
        var body = Substring(text.trimmingWhitespace())
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

    /// `PATH[@GPA]`: the whole file as one region at GPA (default 0).
    public static func memory(_ text: String) throws(ParseError) -> GuestRAMRegionSpec {
        var path = text
        var gpa: UInt64 = 0
        if let at = text.lastIndex(of: "@") {
            guard let g = number(String(text[text.index(after: at)...])) else {
                throw ParseError(description: "--memory \(text): '\(text[text.index(after: at)...])' is not an address (use PATH@0x100000000)")
            }
            gpa = g
            path = String(text[..<at])
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ParseError(description: "--memory \(text): cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        let size = UInt64(st.st_size)
        guard size > 0, size & 0xfff == 0 else {
            throw ParseError(description: "--memory \(text): \(path) is \(size) bytes; a RAM image must be a non-empty multiple of 4 KiB (use --region to map part of it)")
        }
        return GuestRAMRegionSpec(gpa: gpa, size: size, backing: .path(path, offset: 0))
    }

    /// `GPA:SIZE@PATH[+OFFSET]`.
    public static func region(_ text: String) throws(ParseError) -> GuestRAMRegionSpec {
        let usage = "expected GPA:SIZE@PATH[+OFFSET], e.g. 0x100000000:2G@/dev/shm/vm-ram+0x80000000"
        guard let colon = text.firstIndex(of: ":"), let at = text.firstIndex(of: "@"), colon < at else {
            throw ParseError(description: "--region \(text): \(usage)")
        }
        guard let gpa = number(String(text[..<colon])) else {
            throw ParseError(description: "--region \(text): GPA '\(text[..<colon])' is not a number; \(usage)")
        }
        guard let size = number(String(text[text.index(after: colon)..<at])) else {
            throw ParseError(description: "--region \(text): SIZE '\(text[text.index(after: colon)..<at])' is not a number; \(usage)")
        }
        var path = String(text[text.index(after: at)...])
        var offset: UInt64 = 0
        if let plus = path.lastIndex(of: "+") {
            guard let o = number(String(path[path.index(after: plus)...])) else {
                throw ParseError(description: "--region \(text): OFFSET '\(path[path.index(after: plus)...])' is not a number; \(usage)")
            }
            offset = o
            path = String(path[..<plus])
        }
        guard !path.isEmpty else { throw ParseError(description: "--region \(text): the path is empty; \(usage)") }
        return GuestRAMRegionSpec(gpa: gpa, size: size, backing: .path(path, offset: offset))
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
