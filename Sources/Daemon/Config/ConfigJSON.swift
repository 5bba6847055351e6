/// A strict reader for the config file's JSON, used to check the file before
/// swift-configuration's FileProvider reads its values.
///
/// Foundation's JSONSerialization on Linux reports no position for a syntax
/// error, accepts trailing commas, and lets a repeated key silently replace
/// the earlier one. This reader reports line and column, rejects both, and
/// keeps the position of every key and value so that later errors can name
/// the line.
struct ConfigJSON {
    indirect enum Value: Equatable {
        case object([Member])
        case array([Node])
        case string(String)
        case integer(Int)
        /// A fraction, an exponent, or an integer beyond 64 bits; `text` as written.
        case number(Double, text: String)
        case bool(Bool)
        case null
    }

    struct Node: Equatable {
        var value: Value
        var line: Int
        var column: Int
    }

    struct Member: Equatable {
        var key: String
        var line: Int
        var column: Int
        var node: Node
    }

    struct SyntaxError: Error, Equatable {
        var line: Int
        var column: Int
        var message: String
    }

    /// Nesting deeper than this is refused (no config needs more than 3).
    static let maximumDepth = 32

    static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> Node {
        var parser = ConfigJSON(bytes: bytes)
        // A UTF-8 byte order mark is tolerated, as editors write one.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.index = 3 }
        parser.skipWhitespace()
        guard parser.index < bytes.count else {
            throw SyntaxError(line: parser.line, column: parser.column, message: "the file is empty; expected a JSON object")
        }
        let node = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.index < bytes.count {
            throw parser.error("unexpected \(parser.describeCurrent()) after the top-level value")
        }
        return node
    }

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var column = 1

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func error(_ message: String) -> SyntaxError {
        SyntaxError(line: line, column: column, message: message)
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func advance() {
        let byte = bytes[index]
        index += 1
        if byte == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else if byte & 0xC0 != 0x80 {
            // Columns count characters (Unicode scalars), not UTF-8 bytes.
            column += 1
        }
    }

    private func describeCurrent() -> String {
        guard let byte = current else { return "end of file" }
        if byte >= 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16))"
    }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            advance()
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(SyntaxError) {
        guard current == byte else { throw error("expected \(what), found \(describeCurrent())") }
        advance()
    }

    private mutating func parseValue(depth: Int) throws(SyntaxError) -> Node {
        let startLine = line, startColumn = column
        func node(_ value: Value) -> Node { Node(value: value, line: startLine, column: startColumn) }
        guard let byte = current else { throw error("expected a value, found end of file") }
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth) levels") }
            return node(.object(try parseObject(depth: depth + 1)))
        case UInt8(ascii: "["):
            guard depth < Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth) levels") }
            return node(.array(try parseArray(depth: depth + 1)))
        case UInt8(ascii: "\""):
            return node(.string(try parseString()))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return node(try parseNumber())
        case UInt8(ascii: "t"):
            try parseLiteral("true")
            return node(.bool(true))
        case UInt8(ascii: "f"):
            try parseLiteral("false")
            return node(.bool(false))
        case UInt8(ascii: "n"):
            try parseLiteral("null")
            return node(.null)
        default:
            let isLetter = (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
            throw error("expected a value (object, array, string, number, true, false or null), found \(describeCurrent())"
                        + (isLetter ? "; strings need double quotes" : ""))
        }
    }

    private mutating func parseLiteral(_ word: String) throws(SyntaxError) {
        let startLine = line, startColumn = column
        for expected in word.utf8 {
            guard current == expected else {
                throw SyntaxError(line: startLine, column: startColumn,
                                  message: "expected a value; did you mean \(word)? (strings need double quotes)")
            }
            advance()
        }
    }

    private mutating func parseObject(depth: Int) throws(SyntaxError) -> [Member] {
        advance() // {
        var members: [Member] = []
        var seen: [String: Int] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            advance()
            return members
        }
        while true {
            skipWhitespace()
            let keyLine = line, keyColumn = column
            guard current == UInt8(ascii: "\"") else {
                if current == UInt8(ascii: "}") { throw error("trailing comma before \"}\"; remove the last \",\"") }
                throw error("expected a key in double quotes, found \(describeCurrent())")
            }
            let key = try parseString()
            if let earlier = seen[key] {
                throw SyntaxError(line: keyLine, column: keyColumn,
                                  message: "key \"\(key)\" appears twice in the same object (first on line \(earlier)); keep one")
            }
            seen[key] = keyLine
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "\":\" after the key \"\(key)\"")
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append(Member(key: key, line: keyLine, column: keyColumn, node: value))
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                advance()
                continue
            }
            if current == UInt8(ascii: "}") {
                advance()
                return members
            }
            throw error("expected \",\" or \"}\" after the value of \"\(key)\", found \(describeCurrent())")
        }
    }

    private mutating func parseArray(depth: Int) throws(SyntaxError) -> [Node] {
        advance() // [
        var elements: [Node] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            advance()
            return elements
        }
        while true {
            skipWhitespace()
            if current == UInt8(ascii: "]") { throw error("trailing comma before \"]\"; remove the last \",\"") }
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                advance()
                continue
            }
            if current == UInt8(ascii: "]") {
                advance()
                return elements
            }
            throw error("expected \",\" or \"]\" in an array, found \(describeCurrent())")
        }
    }

    private mutating func parseString() throws(SyntaxError) -> String {
        advance() // opening quote
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flushRaw() throws(SyntaxError) {
            guard !raw.isEmpty else { return }
            guard let text = String(validating: raw, as: UTF8.self) else {
                throw error("a string is not valid UTF-8")
            }
            scalars.append(contentsOf: text.unicodeScalars)
            raw.removeAll(keepingCapacity: true)
        }
        while true {
            guard let byte = current else { throw error("unterminated string: expected a closing \"") }
            switch byte {
            case UInt8(ascii: "\""):
                try flushRaw()
                advance()
                return String(scalars)
            case UInt8(ascii: "\\"):
                try flushRaw()
                advance()
                guard let escape = current else { throw error("unterminated string: expected a closing \"") }
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    advance()
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard current == UInt8(ascii: "\\") else { throw error("a \\u high surrogate must be followed by a \\u low surrogate") }
                        advance()
                        guard current == UInt8(ascii: "u") else { throw error("a \\u high surrogate must be followed by a \\u low surrogate") }
                        advance()
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("a \\u high surrogate must be followed by a \\u low surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("\\u escape is not a Unicode scalar") }
                    scalars.append(scalar)
                    continue // parseHex4 already advanced past the digits
                default:
                    throw error("unknown escape \"\\\(Character(Unicode.Scalar(escape)))\" in a string")
                }
                advance()
            case 0x00..<0x20:
                throw error("control character in a string (a line break inside quotes?); escape it")
            default:
                raw.append(byte)
                advance()
            }
        }
    }

    private mutating func parseHex4() throws(SyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current, let digit = hexDigit(byte) else {
                throw error("\\u must be followed by four hex digits")
            }
            value = value << 4 | UInt32(digit)
            advance()
        }
        return value
    }

    private func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private mutating func parseNumber() throws(SyntaxError) -> Value {
        let start = index
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false }
        var integral = true
        if current == UInt8(ascii: "-") { advance() }
        guard isDigit(current) else { throw error("expected a digit in a number, found \(describeCurrent())") }
        if current == UInt8(ascii: "0") {
            advance()
            if isDigit(current) { throw error("a number must not have leading zeros") }
        } else {
            while isDigit(current) { advance() }
        }
        if current == UInt8(ascii: ".") {
            integral = false
            advance()
            guard isDigit(current) else { throw error("expected a digit after the decimal point") }
            while isDigit(current) { advance() }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            integral = false
            advance()
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { advance() }
            guard isDigit(current) else { throw error("expected a digit in the exponent") }
            while isDigit(current) { advance() }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if integral, let value = Int(text) { return .integer(value) }
        return .number(Double(text) ?? .nan, text: text)
    }
}

extension ConfigJSON.Value {
    /// How a value is named in an error: its JSON kind and, for scalars, the
    /// value itself.
    var errorDescription: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string(let s): "the string \"\(s)\""
        case .integer(let i): "the number \(i)"
        case .number(_, let text): "the number \(text)"
        case .bool(let b): "\(b)"
        case .null: "null"
        }
    }
}
