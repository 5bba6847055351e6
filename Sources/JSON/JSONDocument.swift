/// A JSON text parsed by the one parser with every value's position kept:
/// the config file (docs/CONFIG.md), whose errors name a line. The same
/// grammar and messages as `JSONValue.parse`; only the result differs.
public struct JSONDocument: Sendable {
    public let root: JSONNode
    private let bytes: [UInt8]
    /// Offset of the first byte of each line; line 1 starts at 0.
    private let lineStarts: [Int]

    /// Parses `bytes`; a syntax error carries its offset, line and column.
    public static func parse(utf8 bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) -> JSONDocument {
        let result: Result<JSONNode, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            do throws(JSONParseError) {
                return .success(try JSONParser<JSONNodeBuilder>.parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return JSONDocument(root: try result.get(), bytes: bytes)
    }

    private init(root: JSONNode, bytes: [UInt8]) {
        self.root = root
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == 0x0a { starts.append(i + 1) }
        lineStarts = starts
    }

    /// The line (from 1) of a byte offset: a binary search, so a file with
    /// many keys costs no scan per key.
    public func line(of offset: Int) -> Int {
        var low = 0, high = lineStarts.count
        while high - low > 1 {
            let middle = (low + high) / 2
            if lineStarts[middle] <= offset { low = middle } else { high = middle }
        }
        return low + 1
    }

    public func position(of offset: Int) -> JSONTextPosition {
        let line = line(of: offset)
        let column = bytes.withUnsafeBufferPointer {
            JSONTextPosition.column(of: offset, lineStart: lineStarts[line - 1], in: $0)
        }
        return JSONTextPosition(line: line, column: column)
    }

    /// A value's text as written, e.g. a number's digits.
    public func text(of node: JSONNode) -> String {
        String(decoding: bytes[node.range], as: UTF8.self)
    }
}
