/// The JSON-lines envelope of the control socket (PROTOCOL.md §2.2):
/// requests `{"execute":…,"arguments":{…},"id":…}`, replies
/// `{"return":…,"id":…}` or `{"error":{"code":…,"message":…},"id":…}`.
/// Lines come from `LineDecoder`; the commands themselves are the daemon's.
public enum ControlCodec {
    /// The members a request may have (§2.2).
    static let requestMembers: Set<String> = ["execute", "arguments", "id"]

    /// Parses one request line (without its newline).
    ///
    /// Not JSON, or not an object → `parse-error`; `execute` missing →
    /// `missing-argument`; `execute` not a non-empty string, `arguments` not
    /// an object (null included), or a member other than execute, arguments
    /// and id → `invalid-argument` naming it; a well-formed request for a
    /// command that does not exist → `unknown-command`. The id is recovered
    /// whenever the line was a JSON object, so the error reply can echo it.
    public static func parseRequest(_ line: some StringProtocol) -> Result<ControlRequest, ControlFailure> {
        func fail(_ id: JSONValue?, _ error: ControlError) -> Result<ControlRequest, ControlFailure> {
            .failure(ControlFailure(id: id, error: error))
        }
        if line.utf8.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d }) {
            return fail(nil, .parseError("empty line"))
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch {
            return fail(nil, .parseError("request is not valid JSON: \(error)"))
        }
        guard case .object(let members) = value else {
            return fail(nil, .parseError("request is \(value.kindDescription), not a JSON object"))
        }
        let id = members["id"]
        guard let execute = members["execute"] else {
            return fail(id, .missingArgument("execute"))
        }
        guard case .string(let command) = execute else {
            return fail(id, .invalidArgument("execute", "must be a string naming the command, got \(execute.kindDescription)"))
        }
        guard !command.isEmpty else {
            return fail(id, .invalidArgument("execute", "is empty; it must name a command (\(ControlCommand.names.joined(separator: ", ")))"))
        }
        var arguments: [String: JSONValue] = [:]
        if let given = members["arguments"] {
            guard case .object(let object) = given else {
                return fail(id, .invalidArgument("arguments", "must be an object, got \(given.kindDescription); omit it or send {}"))
            }
            arguments = object
        }
        if let extra = members.keys.filter({ !requestMembers.contains($0) }).sorted().first {
            return fail(id, .invalidArgument(extra, "is not a request member; a request has execute, arguments and id (command arguments go inside \"arguments\")"))
        }
        guard let known = ControlCommand(rawValue: command) else {
            return fail(id, .unknownCommand(command))
        }
        return .success(ControlRequest(id: id, command: known, arguments: arguments))
    }

    /// `{"id":…,"return":…}` and a newline; no id member when `id` is nil.
    public static func successLine(id: JSONValue?, result: JSONValue) -> String {
        var reply: [String: JSONValue] = ["return": result]
        if let id { reply["id"] = id }
        return JSONValue.object(reply).serialized + "\n"
    }

    /// `{"error":{"code":…,"message":…},"id":…}` and a newline.
    public static func errorLine(id: JSONValue?, error: ControlError) -> String {
        var reply: [String: JSONValue] = ["error": ["code": .string(error.code.rawValue), "message": .string(error.message)]]
        if let id { reply["id"] = id }
        return JSONValue.object(reply).serialized + "\n"
    }

    /// The error line for a failed envelope, echoing the id it recovered.
    public static func errorLine(_ failure: ControlFailure) -> String {
        errorLine(id: failure.id, error: failure.error)
    }

    /// A request line for clients: `{"arguments":{…},"execute":…,"id":…}` and
    /// a newline (arguments always present, id omitted when nil).
    public static func requestLine(command: String, arguments: [String: JSONValue] = [:], id: JSONValue? = nil) -> String {
        var request: [String: JSONValue] = ["execute": .string(command), "arguments": .object(arguments)]
        if let id { request["id"] = id }
        return JSONValue.object(request).serialized + "\n"
    }

    /// Parses a reply line (client side). Strict: a JSON object with exactly
    /// one of `return` and `error`, an optional `id` and nothing else; an
    /// `error` is an object of exactly a string `code` of §2.2's list and a
    /// string `message`. A reply that breaks these rules is a `parse-error`
    /// (quoting an unknown code and its message, so that nothing is lost).
    public static func parseReply(_ line: some StringProtocol) -> Result<ControlReply, ControlError> {
        func fail(_ why: String) -> Result<ControlReply, ControlError> {
            .failure(ControlError(code: .parseError, message: "reply \(why) (PROTOCOL.md §2.2)"))
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch {
            return fail("is not valid JSON: \(error)")
        }
        guard case .object(let members) = value else { return fail("is \(value.kindDescription), not a JSON object") }
        if let extra = members.keys.filter({ !["return", "error", "id"].contains($0) }).sorted().first {
            return fail("has an unexpected member \"\(extra)\"")
        }
        let id = members["id"]
        switch (members["return"], members["error"]) {
        case (let result?, nil):
            return .success(ControlReply(id: id, result: .success(result)))
        case (nil, let error?):
            guard case .object(let fields) = error else { return fail("member \"error\" is \(error.kindDescription), not an object") }
            guard case .string(let code)? = fields["code"] else { return fail("error has no string \"code\"") }
            guard case .string(let message)? = fields["message"] else { return fail("error has no string \"message\"") }
            guard fields.count == 2 else { return fail("error has members other than \"code\" and \"message\"") }
            guard let known = ControlError.Code(rawValue: code) else {
                return fail("has the error code \"\(code)\", which is not one of \(ControlError.Code.allCases.map(\.rawValue).joined(separator: ", ")) (its message: \(message))")
            }
            return .success(ControlReply(id: id, result: .failure(ControlError(code: known, message: message))))
        case (nil, nil):
            return fail("has neither \"return\" nor \"error\"")
        case (_?, _?):
            return fail("has both \"return\" and \"error\"")
        }
    }
}
