import Wire

/// Fuzz target 2: the control socket's request path (`LineDecoder`,
/// `JSONValue.parse`, `ControlCodec.parseRequest`, `ControlRequest`'s typed
/// accessors) and the reply codec a client uses.
///
/// Input: one configuration byte, one chunking byte, then the bytes a client
/// sent. Invariants:
///
/// - line splitting does not depend on chunking: the lines, the one
///   `line-too-long` and what stays buffered are what a reference split of
///   the whole stream says; a line is refused as not UTF-8 exactly when the
///   standard library's validation refuses it;
/// - the JSON parser agrees with itself: parsing the raw bytes, parsing the
///   line as a String, and parsing it with positions as the config file is
///   (`JSONDocument`) give the same value or the same error; a parsed value
///   serializes to text that parses back to an equal value, and that text is
///   a fixed point;
/// - a request that parses round-trips through `ControlCodec.requestLine`
///   (its command and every error code are known by their types); every
///   typed accessor either returns or throws an argument error;
/// - a refused request yields an error line that a client parses back to the
///   same code, message and id;
/// - a line that parses as a reply re-encodes to a reply that parses equal.
public enum ControlFuzzer {
    public static func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        do {
            try runChecked(data)
            return .ok
        } catch {
            return .failed(error.message)
        }
    }

    static func runChecked(_ data: UnsafeRawBufferPointer) throws(Violation) {
        var input = FuzzReader(data)
        let config = input.u8(or: 0)
        let chunkSelector = input.u8(or: 0)
        // Bits 0-1 == 0: a small line limit, so that line-too-long is reached.
        let maxLine = config & 3 == 0 ? Int(config >> 2) * 4 : LineDecoder.defaultMaxLineBytes
        let stream = Array(input.rest())

        var decoder = LineDecoder(maxLineBytes: maxLine)
        var chunker = Chunker(selector: chunkSelector)
        var results: [Result<String, ControlError>] = []
        var offset = 0
        while offset < stream.count {
            let size = chunker.next(remaining: stream.count - offset)
            stream[offset ..< offset + size].withUnsafeBytes { decoder.append($0) }
            offset += size
            while let line = decoder.next() { results.append(line) }
        }

        // The reference split.
        var lines: [ArraySlice<UInt8>] = []
        var tooLong = false
        var start = 0
        var tail = 0
        while true {
            guard let newline = stream[start...].firstIndex(of: 0x0a) else {
                if stream.count - start > maxLine { tooLong = true } else { tail = stream.count - start }
                break
            }
            if newline - start > maxLine { tooLong = true; break }
            lines.append(stream[start ..< newline])
            start = newline + 1
        }
        try check(results.count == lines.count + (tooLong ? 1 : 0),
                  "\(results.count) results, the reference split has \(lines.count) lines\(tooLong ? " and line-too-long" : "") (limit \(maxLine))")
        try check(decoder.isPoisoned == tooLong, "decoder poisoned: \(decoder.isPoisoned), reference: \(tooLong)")
        try check(decoder.bufferedByteCount == (tooLong ? 0 : tail), "decoder buffers \(decoder.bufferedByteCount) bytes, reference \(tail)")
        if tooLong {
            guard case let .failure(error) = results.last!, error.code == .lineTooLong else {
                throw Violation("the line past the limit gave \(results.last!), not line-too-long")
            }
        }
        // A line's checks depend only on its bytes: run them once per distinct line.
        var checked = Set<ArraySlice<UInt8>>()
        for (i, line) in lines.enumerated() {
            let valid = String(validating: line, as: UTF8.self)
            let fresh = checked.insert(line).inserted
            switch results[i] {
            case let .success(text):
                guard let valid else { throw Violation("line \(i) (\(hexBytes(line))) is not UTF-8 but was accepted") }
                try check(text == valid && Array(text.utf8) == Array(line), "line \(i) decoded to different text")
                if fresh { try checkLine(text, bytes: line, index: i) }
            case let .failure(error):
                try check(valid == nil, "line \(i) is valid UTF-8 but was refused: \(error)")
                try check(error.code == .parseError, "invalid UTF-8 refused with code \(error.code)")
                if fresh { try checkParsesAsJSON(false, bytes: line, index: i) }
            }
        }
    }

    /// `JSONValue.parse(utf8:)` over the raw bytes must fail for a line that
    /// is not UTF-8, and agree with the String parse otherwise.
    static func checkParsesAsJSON(_ expectSuccess: Bool, bytes: ArraySlice<UInt8>, index i: Int) throws(Violation) {
        let parsed: Result<JSONValue, JSONParseError>
        do throws(JSONParseError) {
            parsed = .success(try JSONValue.parse(utf8: Array(bytes)))
        } catch {
            parsed = .failure(error)
        }
        if case .success = parsed, !expectSuccess {
            throw Violation("line \(i): the JSON parser accepted bytes that are not UTF-8: \(hexBytes(bytes))")
        }
        if case let .failure(error) = parsed {
            try check(error.offset >= 0 && error.offset <= bytes.count, "line \(i): parse error offset \(error.offset) outside the \(bytes.count)-byte text")
        }
        try checkDocumentAgrees(with: parsed, bytes: bytes, index: i)
    }

    /// The config file's parse (values with positions) is the same parser:
    /// the same value without positions, or the same error.
    static func checkDocumentAgrees(with plain: Result<JSONValue, JSONParseError>, bytes: ArraySlice<UInt8>, index i: Int) throws(Violation) {
        let document: Result<JSONValue, JSONParseError>
        do throws(JSONParseError) {
            document = .success(try JSONDocument.parse(utf8: Array(bytes)).root.value)
        } catch {
            document = .failure(error)
        }
        try check(document == plain, "line \(i): JSONDocument.parse gave \(document), JSONValue.parse \(plain)")
    }

    static func checkLine(_ text: String, bytes: ArraySlice<UInt8>, index i: Int) throws(Violation) {
        // The parser over bytes and over the String agree.
        let fromString: Result<JSONValue, JSONParseError>
        do throws(JSONParseError) { fromString = .success(try JSONValue.parse(text)) } catch { fromString = .failure(error) }
        let fromBytes: Result<JSONValue, JSONParseError>
        do throws(JSONParseError) { fromBytes = .success(try JSONValue.parse(utf8: Array(bytes))) } catch { fromBytes = .failure(error) }
        try check(fromString == fromBytes, "line \(i): parse(String) gave \(fromString), parse(utf8:) gave \(fromBytes)")
        try checkDocumentAgrees(with: fromBytes, bytes: bytes, index: i)
        switch fromString {
        case let .success(value):
            try checkRoundTrip(value, index: i)
        case let .failure(error):
            try check(error.offset >= 0 && error.offset <= bytes.count, "line \(i): parse error offset \(error.offset) outside the \(bytes.count)-byte text")
        }

        switch ControlCodec.parseRequest(text) {
        case let .success(request):
            guard case .success(.object) = fromString else {
                throw Violation("line \(i): a request was accepted from a line that is not a JSON object")
            }
            let line = ControlCodec.requestLine(command: request.command.rawValue, arguments: request.arguments, id: request.id)
            try check(line.hasSuffix("\n") && !line.dropLast().contains("\n"), "line \(i): requestLine is not one line")
            let again = ControlCodec.parseRequest(line.dropLast())
            try check(again == .success(request), "line \(i): request \(request) round-trips to \(again)")
            try exerciseAccessors(request, index: i)
        case let .failure(failure):
            let line = ControlCodec.errorLine(failure)
            try check(line.hasSuffix("\n") && !line.dropLast().contains("\n"), "line \(i): errorLine is not one line")
            let reply = ControlCodec.parseReply(line.dropLast())
            let expected = ControlReply(id: failure.id, result: .failure(failure.error))
            try check(reply == .success(expected), "line \(i): error line \(line) parses as \(reply)")
        }

        // The client side: a line that is a reply must survive re-encoding.
        if case let .success(reply) = ControlCodec.parseReply(text) {
            let line: String
            switch reply.result {
            case let .success(value): line = ControlCodec.successLine(id: reply.id, result: value)
            case let .failure(error): line = ControlCodec.errorLine(id: reply.id, error: error)
            }
            let again = ControlCodec.parseReply(line.dropLast())
            try check(again == .success(reply), "line \(i): reply \(reply) re-encodes to \(line), which parses as \(again)")
        }
    }

    /// A parsed value's serialization parses back equal and is a fixed point.
    static func checkRoundTrip(_ value: JSONValue, index i: Int) throws(Violation) {
        let text = value.serialized
        let back: JSONValue
        do throws(JSONParseError) {
            back = try JSONValue.parse(text)
        } catch {
            throw Violation("line \(i): serialized value \(text) does not parse: \(error)")
        }
        try check(back == value, "line \(i): \(text) parses back as \(back.serialized)")
        try check(back.serialized == text, "line \(i): serialization is not a fixed point: \(text) then \(back.serialized)")
    }

    /// Absent names the accessors are also tried with.
    static let absentNames = ["guest", "quota"]

    /// Calls every typed accessor the daemon's commands use on every argument
    /// (and on two names when absent): each returns or throws a known code.
    static func exerciseAccessors(_ request: ControlRequest, index i: Int) throws(Violation) {
        let names = Set(request.arguments.keys).union(absentNames)
        for name in names.sorted() {
            let present = request.arguments[name].map { !$0.isNull } ?? false
            func known(_ error: ControlError) throws(Violation) {
                try check(error.code == .invalidArgument || error.code == .missingArgument,
                          "line \(i): accessor for \"\(name)\" threw \(error.code)")
                try check(present || error.code == .missingArgument,
                          "line \(i): accessor for absent \"\(name)\" threw \(error.code)")
            }
            do throws(ControlError) { _ = try request.string(name) } catch { try known(error) }
            do throws(ControlError) { _ = try request.requiredString(name) } catch { try known(error) }
            do throws(ControlError) { _ = try request.int(name) } catch { try known(error) }
            do throws(ControlError) { _ = try request.int(name, in: 0 ... 65535) } catch { try known(error) }
            do throws(ControlError) { _ = try request.requiredInt(name, in: -1 ... 1) } catch { try known(error) }
            do throws(ControlError) { _ = try request.bool(name) } catch { try known(error) }
            do throws(ControlError) { _ = try request.requiredBool(name) } catch { try known(error) }
        }
        do throws(ControlError) {
            try request.allowOnly(["host", "group", "guest", "return-fd", "quota"])
        } catch {
            try check(error.code == .invalidArgument, "line \(i): allowOnly threw \(error.code)")
        }
    }
}
