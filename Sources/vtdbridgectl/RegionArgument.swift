import Bridge
import Glibc
import VTdBridgeClient

/// The guest RAM options of `vtdbridgectl walk`: --memory PATH[@GPA] and
/// --region GPA:SIZE@PATH[+OFFSET].
enum RegionArgument {
    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    /// `--memory PATH[@GPA]`: a whole file as guest RAM at GPA. Its size is
    /// known only once the file is looked at (`region()`), which is not a
    /// matter of syntax.
    struct Memory {
        var argument: String
        var path: String
        var gpa: UInt64

        /// The file as one region; fails when it cannot be read or is not a
        /// whole number of pages.
        func region() throws(ParseError) -> GuestRAMRegionSpec {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw ParseError(description: "--memory \(argument): cannot stat \(path): \(String(cString: strerror(errno)))")
            }
            let size = UInt64(st.st_size)
            guard size > 0, size & 0xfff == 0 else {
                throw ParseError(description: "--memory \(argument): \(path) is \(size) bytes; a RAM image must be a non-empty multiple of 4 KiB (use --region to map part of it)")
            }
            return GuestRAMRegionSpec(gpa: gpa, size: size, backing: .path(path, offset: 0))
        }
    }

    /// `PATH[@GPA]`: the whole file as one region at GPA (default 0).
    static func memory(_ text: String) throws(ParseError) -> Memory {
        var path = text
        var gpa: UInt64 = 0
        if let at = text.lastIndex(of: "@") {
            guard let g = CommandLineNumber.parse(String(text[text.index(after: at)...])) else {
                throw ParseError(description: "--memory \(text): '\(text[text.index(after: at)...])' is not an address (use PATH@0x100000000)")
            }
            gpa = g
            path = String(text[..<at])
        }
        guard !path.isEmpty else { throw ParseError(description: "--memory \(text): the path is empty") }
        return Memory(argument: text, path: path, gpa: gpa)
    }

    /// `GPA:SIZE@PATH[+OFFSET]`.
    static func region(_ text: String) throws(ParseError) -> GuestRAMRegionSpec {
        let usage = "expected GPA:SIZE@PATH[+OFFSET], e.g. 0x100000000:2G@/dev/shm/vm-ram+0x80000000"
        guard let colon = text.firstIndex(of: ":"), let at = text.firstIndex(of: "@"), colon < at else {
            throw ParseError(description: "--region \(text): \(usage)")
        }
        guard let gpa = CommandLineNumber.parse(String(text[..<colon])) else {
            throw ParseError(description: "--region \(text): GPA '\(text[..<colon])' is not a number; \(usage)")
        }
        guard let size = CommandLineNumber.parse(String(text[text.index(after: colon)..<at])) else {
            throw ParseError(description: "--region \(text): SIZE '\(text[text.index(after: colon)..<at])' is not a number; \(usage)")
        }
        var path = String(text[text.index(after: at)...])
        var offset: UInt64 = 0
        if let plus = path.lastIndex(of: "+") {
            guard let o = CommandLineNumber.parse(String(path[path.index(after: plus)...])) else {
                throw ParseError(description: "--region \(text): OFFSET '\(path[path.index(after: plus)...])' is not a number; \(usage)")
            }
            offset = o
            path = String(path[..<plus])
        }
        guard !path.isEmpty else { throw ParseError(description: "--region \(text): the path is empty; \(usage)") }
        return GuestRAMRegionSpec(gpa: gpa, size: size, backing: .path(path, offset: offset))
    }
}
