import VTd

/// Splits the control socket's byte stream into lines (PROTOCOL.md §2.2):
/// each request is one line terminated by `\n`, at most 65,536 bytes.
///
/// The limit counts the line's bytes without its newline. When the pending
/// line grows past it — newline seen or not — `next` returns
/// `.failure(line-too-long)` once and nil from then on, and further bytes are
/// dropped: the daemon replies and closes the connection. A line that is not
/// valid UTF-8 fails with `parse-error` on its own; the next line is read as
/// usual. Empty lines are returned as empty strings (a `\r` before the
/// newline is kept: JSON treats it as whitespace).
public struct LineDecoder: Sendable {
    /// The request line limit of §2.2.
    public static let defaultMaxLineBytes = 65_536

    /// Longest line accepted. Clients reading replies (which §2.2 does not
    /// bound: `mappings` can be large) pass a larger value.
    public let maxLineBytes: Int

    private var buffer: [UInt8] = []
    /// Start of the pending line in `buffer`.
    private var readIndex = 0
    /// Where the newline search resumes, so no byte is scanned twice.
    private var scanIndex = 0
    public private(set) var isPoisoned = false

    public init(maxLineBytes: Int = LineDecoder.defaultMaxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes received and not yet returned in a line.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !isPoisoned else { return }
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    public mutating func append(_ text: String) {
        append(Array(text.utf8))
    }

    /// The next line without its newline; nil when more bytes are needed.
    public mutating func next() -> Result<String, ControlError>? {
        guard !isPoisoned else { return nil }
        let newline = buffer.withUnsafeBufferPointer { $0[scanIndex...].firstIndex(of: 0x0a) }
        guard let newline else {
            scanIndex = buffer.count
            if buffer.count - readIndex > maxLineBytes { return poison() }
            return nil
        }
        guard newline - readIndex <= maxLineBytes else { return poison() }
        let start = readIndex
        readIndex = newline + 1
        scanIndex = readIndex
        return buffer.withUnsafeBufferPointer { all in
            let line = UnsafeBufferPointer(rebasing: all[start ..< newline])
            if let bad = UTF8Validation.firstInvalidOffset(line) {
                return .failure(.parseError("request line is not valid UTF-8 (byte \(hex(line[bad])) at offset \(bad))"))
            }
            return .success(String(decoding: line, as: UTF8.self))
        }
    }

    private mutating func poison() -> Result<String, ControlError> {
        isPoisoned = true
        buffer = []
        readIndex = 0
        scanIndex = 0
        return .failure(.lineTooLong(limit: maxLineBytes))
    }

    /// Drops the consumed prefix when everything was consumed, or once it is
    /// at least 4 KiB and half the buffer: amortised constant work per byte.
    private mutating func compactIfWorthIt() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
        } else if readIndex >= 4096, readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0 ..< readIndex)
        } else {
            return
        }
        scanIndex -= readIndex
        readIndex = 0
    }
}
