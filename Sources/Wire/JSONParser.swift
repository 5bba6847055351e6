import VTd

/// A strict RFC 8259 parser over UTF-8 bytes, for the control socket
/// (PROTOCOL.md §2.2). Hand-written rather than JSONSerialization so that
/// integers keep their exact 64-bit value and errors say where they are.
///
/// Beyond the RFC's grammar it refuses, as RFC 8259 §9 lets a parser:
/// nesting deeper than `maxDepth`, duplicate object keys (their meaning
/// would be ambiguous), numbers that overflow a Double, lone surrogate
/// escapes, and a byte-order mark.
struct JSONParser {
    /// Containers nested deeper than this are refused: recursion is bounded.
    static let defaultMaxDepth = JSONValue.defaultMaxDepth

    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Parses one JSON text: a value with optional whitespace around it.
    /// `bytes` need not be valid UTF-8: it is checked here.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        if let bad = UTF8Text.firstInvalidOffset(bytes) {
            throw JSONParseError(offset: bad, message: "the text is not valid UTF-8 (byte \(hex(bytes[bad])))")
        }
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        if parser.index == bytes.count { throw parser.error("empty text; expected a JSON value") }
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.index != bytes.count {
            throw parser.error("unexpected \(parser.describeCurrent()) after the JSON value; send one value per text")
        }
        return value
    }

    // MARK: - Values

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of text; expected a value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return try parseNumber()
        case 0xef where index + 2 < bytes.count && bytes[index + 1] == 0xbb && bytes[index + 2] == 0xbf:
            throw error("byte-order mark; send UTF-8 without a BOM (RFC 8259 §8.1)")
        default: throw error("unexpected \(describeCurrent()); expected a value (object, array, string, number, true, false or null)")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        try checkDepth(depth)
        index += 1 // {
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if peek(UInt8(ascii: "}")) { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else { throw error("unexpected \(describeCurrent()); expected a member name in double quotes") }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error("unexpected \(describeCurrent()); expected ':' after member name \"\(key)\"") }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if members.updateValue(value, forKey: key) != nil {
                throw JSONParseError(offset: keyOffset, message: "duplicate member name \"\(key)\"; each name may appear once")
            }
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of text; expected ',' or '}' to continue the object") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return .object(members)
            default: throw error("unexpected \(describeCurrent()); expected ',' or '}' after a member")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        try checkDepth(depth)
        index += 1 // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) { index += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of text; expected ',' or ']' to continue the array") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return .array(elements)
            default: throw error("unexpected \(describeCurrent()); expected ',' or ']' after an element")
            }
        }
    }

    private func checkDepth(_ depth: Int) throws(JSONParseError) {
        if depth > maxDepth {
            throw error("nesting deeper than \(maxDepth) arrays and objects")
        }
    }

    // MARK: - Strings

    private mutating func parseString() throws(JSONParseError) -> String {
        let open = index
        index += 1 // "
        let start = index
        // Fast path: no escapes, copy the bytes as they are (already valid UTF-8).
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< index]), as: UTF8.self)
                index += 1
                return text
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("control character \(hex(b)) inside a string; escape it (e.g. \\n, \\u0000)") }
            index += 1
        }
        var out = Array(UnsafeBufferPointer(rebasing: bytes[start ..< index]))
        while index < bytes.count {
            let b = bytes[index]
            switch b {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case 0 ..< 0x20:
                throw error("control character \(hex(b)) inside a string; escape it (e.g. \\n, \\u0000)")
            default:
                out.append(b)
                index += 1
            }
        }
        throw JSONParseError(offset: open, message: "string is not terminated; add the closing '\"'")
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = index
        index += 1 // backslash
        guard index < bytes.count else { throw error("unexpected end of text inside an escape sequence") }
        let c = bytes[index]
        index += 1
        switch c {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5c)
        case UInt8(ascii: "/"): out.append(0x2f)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0c)
        case UInt8(ascii: "n"): out.append(0x0a)
        case UInt8(ascii: "r"): out.append(0x0d)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            let first = try parseHex4(escapeStart)
            var scalarValue = UInt32(first)
            switch first {
            case 0xd800 ... 0xdbff:
                // A high surrogate must be followed by an escaped low surrogate (RFC 8259 §7).
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw JSONParseError(offset: escapeStart, message: "\\u\(hex4(first)) is a high surrogate without a following \\u low surrogate")
                }
                let lowStart = index
                index += 2
                let second = try parseHex4(lowStart)
                guard (0xdc00 ... 0xdfff).contains(second) else {
                    throw JSONParseError(offset: lowStart, message: "\\u\(hex4(second)) does not complete the surrogate pair begun by \\u\(hex4(first))")
                }
                scalarValue = 0x10000 + ((UInt32(first) - 0xd800) << 10) + (UInt32(second) - 0xdc00)
            case 0xdc00 ... 0xdfff:
                throw JSONParseError(offset: escapeStart, message: "\\u\(hex4(first)) is a low surrogate without a high surrogate before it")
            default:
                break
            }
            // Every value left here is a valid scalar: surrogates were handled above.
            out.append(contentsOf: String(Character(Unicode.Scalar(scalarValue)!)).utf8)
        default:
            throw JSONParseError(offset: escapeStart, message: "invalid escape \\\(describeByte(c)); valid escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
        }
    }

    /// Four hex digits after `\u`, for the escape starting at `escapeStart`.
    private mutating func parseHex4(_ escapeStart: Int) throws(JSONParseError) -> UInt16 {
        guard index + 4 <= bytes.count else {
            throw JSONParseError(offset: escapeStart, message: "\\u escape needs four hex digits")
        }
        var value: UInt16 = 0
        for _ in 0 ..< 4 {
            let b = bytes[index]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw JSONParseError(offset: escapeStart, message: "\\u escape needs four hex digits, found \(describeByte(b))")
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    private func hex4(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 4 - s.count) + s
    }

    // MARK: - Numbers

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else {
            throw error("unexpected \(describeCurrent()); expected a digit in a number")
        }
        let intStart = index
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) {
                throw JSONParseError(offset: intStart, message: "number with a leading zero; JSON numbers have none")
            }
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let intEnd = index
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("unexpected \(describeCurrent()); expected a digit after the decimal point") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("unexpected \(describeCurrent()); expected a digit in the exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if integral, let exact = exactInteger(negative: negative, digits: intStart ..< intEnd) {
            return exact
        }
        // A fraction, an exponent, or an integer beyond 64 bits: a Double.
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw JSONParseError(offset: start, message: "number \(text) is out of the range of a 64-bit float")
        }
        return .double(value)
    }

    /// The integer of the digits, when it fits Int64 (or UInt64 if positive).
    private func exactInteger(negative: Bool, digits: Range<Int>) -> JSONValue? {
        var magnitude: UInt64 = 0
        for i in digits {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[i] - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            magnitude = sum
        }
        if negative {
            if magnitude == 0 { return .int(0) }
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
        }
        return JSONValue(integer: magnitude)
    }

    // MARK: - Tokens

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let start = index
        let count = literal.utf8CodeUnitCount
        let matches = index + count <= bytes.count && (0 ..< count).allSatisfy { bytes[index + $0] == literal.utf8Start[$0] }
        guard matches else {
            throw JSONParseError(offset: start, message: "unexpected \(describeCurrent()); expected \(literal)")
        }
        index += count
    }

    /// RFC 8259 §2: space, tab, line feed, carriage return, nothing else.
    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    private func peek(_ b: UInt8) -> Bool { index < bytes.count && bytes[index] == b }

    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    private func describeCurrent() -> String {
        index < bytes.count ? describeByte(bytes[index]) : "end of text"
    }

    private func describeByte(_ b: UInt8) -> String {
        (0x21 ... 0x7e).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "byte \(hex(b))"
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(offset: index, message: message)
    }
}

extension JSONValue {
    /// Nesting limit of `parse`: 64 arrays and objects, far more than any
    /// request needs, and it bounds the parser's recursion.
    public static let defaultMaxDepth = 64

    /// Parses a JSON text (RFC 8259), nesting at most `maxDepth` deep.
    public static func parse(_ text: some StringProtocol, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        var string = String(text)
        let result: Result<JSONValue, JSONParseError> = string.withUTF8 { buffer in
            do throws(JSONParseError) {
                return .success(try JSONParser.parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses a JSON text given as UTF-8 bytes; invalid UTF-8 is an error
    /// naming the offset of the first bad byte.
    public static func parse(utf8 bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            do throws(JSONParseError) {
                return .success(try JSONParser.parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
