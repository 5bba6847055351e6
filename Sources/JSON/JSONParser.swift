/// The project's one JSON parser: strict RFC 8259 over UTF-8 bytes. It reads
/// the control socket's request lines (`JSONValue.parse`, PROTOCOL.md §2.2)
/// and the config file (`JSONDocument.parse`, which also keeps where each
/// value was written), so both get one grammar and the same error messages.
/// Hand-written rather than JSONSerialization so that integers keep their
/// exact 64-bit value, every error names its offset, line and column, and no
/// Foundation is needed.
///
/// Beyond the RFC's grammar it refuses, as RFC 8259 §9 lets a parser:
/// nesting deeper than `maxDepth`, a key repeated in one object (RFC 8259 §4:
/// its meaning would depend on the reader), numbers beyond a Double, and
/// lone surrogate escapes. What people typing a file get wrong (a trailing
/// comma, a bare word, a line break inside quotes) is refused with a hint.
///
/// Byte-order mark: one U+FEFF at the very start of the text is skipped; one
/// anywhere else is an error. RFC 8259 §8.1 forbids writing one but lets a
/// parser ignore it. Some editors save files with one, and a config file
/// that loaded before the two parsers became one must still load; skipping
/// it changes no value, so a control client that sends one loses nothing.
/// Refusing it on one path and not the other would make "is this JSON?"
/// depend on where the text came from.
struct JSONParser<Builder: JSONTreeBuilder> {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Parses one JSON text: a value with optional whitespace around it.
    /// `bytes` need not be valid UTF-8: it is checked here, first, so that
    /// the rest can decode strings without checking again.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws(JSONParseError) -> Builder.Node {
        if let bad = UTF8Validation.firstInvalidOffset(bytes) {
            throw JSONParseError(offset: bad, in: bytes, message: "the text is not valid UTF-8 (byte \(hex(bytes[bad])))")
        }
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        if JSONTextPosition.hasByteOrderMark(bytes) { parser.index = JSONTextPosition.byteOrderMark.count }
        parser.skipWhitespace()
        if parser.index == bytes.count { throw parser.error("empty text; expected a JSON value") }
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.index != bytes.count {
            throw parser.error("expected the end of the text after the top-level value, found \(parser.describeCurrent()); a text holds one JSON value")
        }
        return value
    }

    // MARK: - Values

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> Builder.Node {
        guard index < bytes.count else { throw error("expected a value, found end of text") }
        let start = index
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            let text = try parseString()
            return Builder.scalar(.string(text), text: start ..< index)
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return Builder.scalar(.bool(true), text: start ..< index)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return Builder.scalar(.bool(false), text: start ..< index)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return Builder.scalar(.null, text: start ..< index)
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"):
            let number = try parseNumber()
            return Builder.scalar(number, text: start ..< index)
        case let b:
            var message = "expected a value (object, array, string, number, true, false or null), found \(describeCurrent())"
            if (UInt8(ascii: "a") ... UInt8(ascii: "z")).contains(b | 0x20) || b == UInt8(ascii: "'") {
                message += "; strings need double quotes"
            } else if b == UInt8(ascii: "/") {
                message += "; JSON has no comments"
            }
            throw error(message)
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> Builder.Node {
        try checkDepth(depth)
        let start = index
        index += 1 // {
        var members = Builder.emptyMembers()
        skipWhitespace()
        if peek(UInt8(ascii: "}")) {
            index += 1
            return Builder.object(members, text: start ..< index)
        }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else {
                if peek(UInt8(ascii: "}")) { throw error("trailing comma before \"}\"; remove the last \",\"") }
                throw error("expected a key in double quotes, found \(describeCurrent())")
            }
            let nameOffset = index
            let name = try parseString()
            if case let .present(earlier) = Builder.lookup(name, in: members) {
                // Where the first one is, when the builder kept it and it is
                // on another line: on the same line it is in plain sight.
                var message = "key \"\(name)\" appears twice in the same object"
                if let earlier {
                    let first = JSONTextPosition.locate(earlier, in: bytes).line
                    if first != JSONTextPosition.locate(nameOffset, in: bytes).line { message += " (first on line \(first))" }
                }
                throw JSONParseError(offset: nameOffset, in: bytes, message: message + "; keep one")
            }
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else {
                throw error("expected \":\" after the key \"\(name)\", found \(describeCurrent())")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            Builder.add(name, at: nameOffset, value, to: &members)
            skipWhitespace()
            switch index < bytes.count ? bytes[index] : nil {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "}"):
                index += 1
                return Builder.object(members, text: start ..< index)
            default:
                throw error("expected \",\" or \"}\" after the value of \"\(name)\", found \(describeCurrent())")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> Builder.Node {
        try checkDepth(depth)
        let start = index
        index += 1 // [
        var elements: [Builder.Node] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) {
            index += 1
            return Builder.array(elements, text: start ..< index)
        }
        while true {
            skipWhitespace()
            if peek(UInt8(ascii: "]")) { throw error("trailing comma before \"]\"; remove the last \",\"") }
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            switch index < bytes.count ? bytes[index] : nil {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "]"):
                index += 1
                return Builder.array(elements, text: start ..< index)
            default:
                throw error("expected \",\" or \"]\" after an array element, found \(describeCurrent())")
            }
        }
    }

    /// Called with the index on the opening bracket, so the error points at it.
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
            if b < 0x20 { throw error(controlCharacterMessage(b)) }
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
                try parseEscape(into: &out, stringStart: open)
            case 0 ..< 0x20:
                throw error(controlCharacterMessage(b))
            default:
                out.append(b)
                index += 1
            }
        }
        throw unterminatedString(open)
    }

    private func controlCharacterMessage(_ b: UInt8) -> String {
        let hint = b == 0x0a ? " (a line break inside quotes?)" : ""
        return "control character \(hex(b)) in a string\(hint); escape it (e.g. \\n, \\t, \\u0000)"
    }

    /// Reported where the string starts: its end is the end of the text.
    private func unterminatedString(_ open: Int) -> JSONParseError {
        JSONParseError(offset: open, in: bytes, message: "unterminated string: no closing '\"' before the end of the text")
    }

    private mutating func parseEscape(into out: inout [UInt8], stringStart: Int) throws(JSONParseError) {
        let escapeStart = index
        index += 1 // backslash
        guard index < bytes.count else { throw unterminatedString(stringStart) }
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
                    throw JSONParseError(offset: escapeStart, in: bytes,
                                         message: "\\u\(hex4(first)) is a high surrogate without a following \\u low surrogate")
                }
                let lowStart = index
                index += 2
                let second = try parseHex4(lowStart)
                guard (0xdc00 ... 0xdfff).contains(second) else {
                    throw JSONParseError(offset: lowStart, in: bytes,
                                         message: "\\u\(hex4(second)) does not complete the surrogate pair begun by \\u\(hex4(first))")
                }
                scalarValue = 0x10000 + ((UInt32(first) - 0xd800) << 10) + (UInt32(second) - 0xdc00)
            case 0xdc00 ... 0xdfff:
                throw JSONParseError(offset: escapeStart, in: bytes,
                                     message: "\\u\(hex4(first)) is a low surrogate without a high surrogate before it")
            default:
                break
            }
            // Every value left here is a valid scalar: surrogates were handled above.
            out.append(contentsOf: String(Character(Unicode.Scalar(scalarValue)!)).utf8)
        default:
            index -= 1
            let what = describeCurrent()
            throw JSONParseError(offset: escapeStart, in: bytes,
                                 message: "invalid escape: a backslash followed by \(what); the escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
        }
    }

    /// Four hex digits after `\u`, for the escape starting at `escapeStart`.
    private mutating func parseHex4(_ escapeStart: Int) throws(JSONParseError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0 ..< 4 {
            let digit: UInt8
            switch index < bytes.count ? bytes[index] : nil {
            case let b? where (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(b): digit = b - UInt8(ascii: "0")
            case let b? where (UInt8(ascii: "a") ... UInt8(ascii: "f")).contains(b): digit = b - UInt8(ascii: "a") + 10
            case let b? where (UInt8(ascii: "A") ... UInt8(ascii: "F")).contains(b): digit = b - UInt8(ascii: "A") + 10
            default:
                throw JSONParseError(offset: escapeStart, in: bytes, message: "\\u escape needs four hex digits, found \(describeCurrent())")
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
            throw error("expected a digit in a number, found \(describeCurrent())")
        }
        let intStart = index
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) {
                throw JSONParseError(offset: intStart, in: bytes, message: "number with a leading zero; JSON numbers have no leading zeros")
            }
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let intEnd = index
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else {
                throw error("expected a digit after the decimal point, found \(describeCurrent())")
            }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else {
                throw error("expected a digit in the exponent, found \(describeCurrent())")
            }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if integral, let exact = exactInteger(negative: negative, digits: intStart ..< intEnd) {
            return exact
        }
        // A fraction, an exponent, or an integer beyond 64 bits: a Double.
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw JSONParseError(offset: start, in: bytes, message: "number \(text) is out of the range of a 64-bit float")
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

    /// `true`, `false` or `null`; anything else that starts with their first
    /// letter is most likely a word meant as a string.
    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let matches = index + count <= bytes.count && (0 ..< count).allSatisfy { bytes[index + $0] == literal.utf8Start[$0] }
        guard matches else {
            throw error("expected a value, found \(describeCurrent()); did you mean \(literal)? (strings need double quotes)")
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

    /// What stands at the index, for "found …": a character in quotes, a
    /// control byte in hex, or the end. The text is valid UTF-8 by now, so a
    /// non-ASCII character is shown whole, with its code point.
    private func describeCurrent() -> String {
        guard index < bytes.count else { return "end of text" }
        let b = bytes[index]
        if (0x21 ... 0x7e).contains(b) { return "'\(Character(Unicode.Scalar(b)))'" }
        if b < 0x80 { return "byte \(hex(b))" }
        var iterator = bytes[index...].makeIterator()
        var decoder = UTF8()
        guard case let .scalarValue(scalar) = decoder.decode(&iterator) else { return "byte \(hex(b))" }
        let codePoint = String(scalar.value, radix: 16, uppercase: true)
        let padded = "U+" + String(repeating: "0", count: max(0, 4 - codePoint.count)) + codePoint
        if scalar == "\u{FEFF}" { return "a byte-order mark (\(padded)), which only the start of a text may carry" }
        return "'\(Character(scalar))' (\(padded))"
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(offset: index, in: bytes, message: message)
    }
}

/// A byte as messages write it: `0x1f`.
private func hex(_ b: UInt8) -> String { "0x" + String(b, radix: 16) }

extension JSONValue {
    /// Nesting limit of `parse`: 64 arrays and objects, far more than any
    /// request needs, and it bounds the parser's recursion.
    public static let defaultMaxDepth = 64

    /// Parses a JSON text (RFC 8259), nesting at most `maxDepth` deep.
    public static func parse(_ text: some StringProtocol, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        var string = String(text)
        let result: Result<JSONValue, JSONParseError> = string.withUTF8 { buffer in
            do throws(JSONParseError) {
                return .success(try JSONParser<JSONValueBuilder>.parse(buffer, maxDepth: maxDepth))
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
                return .success(try JSONParser<JSONValueBuilder>.parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
