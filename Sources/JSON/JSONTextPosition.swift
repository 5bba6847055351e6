/// Where a byte offset lies in a text, as an editor shows it: lines and
/// columns from 1, a column counting characters (Unicode scalars), not
/// bytes, and a leading byte-order mark, which editors do not show, not
/// counted.
public struct JSONTextPosition: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column)" }

    static let byteOrderMark: [UInt8] = [0xef, 0xbb, 0xbf]

    static func hasByteOrderMark(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.count >= 3 && bytes[0] == 0xef && bytes[1] == 0xbb && bytes[2] == 0xbf
    }

    /// The position of `offset`, scanning from the start: for one error.
    static func locate(_ offset: Int, in bytes: UnsafeBufferPointer<UInt8>) -> JSONTextPosition {
        var line = 1
        var lineStart = 0
        for i in 0 ..< min(offset, bytes.count) where bytes[i] == 0x0a {
            line += 1
            lineStart = i + 1
        }
        return JSONTextPosition(line: line, column: column(of: offset, lineStart: lineStart, in: bytes))
    }

    /// The column of `offset` on the line starting at `lineStart`: one plus
    /// the bytes before it that start a character (not 10xxxxxx).
    static func column(of offset: Int, lineStart: Int, in bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var start = lineStart
        if start == 0 && hasByteOrderMark(bytes) { start = min(byteOrderMark.count, offset) }
        var column = 1
        for i in start ..< min(offset, bytes.count) where bytes[i] & 0xc0 != 0x80 { column += 1 }
        return column
    }
}
