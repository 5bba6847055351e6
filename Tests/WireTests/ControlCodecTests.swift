import Foundation
@testable import Wire
import XCTest

final class ControlCodecTests: XCTestCase {
    func request(_ line: String) -> ControlRequest? { try? ControlCodec.parseRequest(line).get() }

    func refusal(_ line: String, file: StaticString = #filePath, line number: UInt = #line) -> ControlFailure? {
        switch ControlCodec.parseRequest(line) {
        case .success(let request):
            XCTFail("accepted \(line) as \(request)", file: file, line: number)
            return nil
        case .failure(let failure):
            return failure
        }
    }

    func testParsesTheDocumentedRequest() throws {
        let parsed = try ControlCodec.parseRequest(#"{"execute": "status", "arguments": {}, "id": 7}"#).get()
        XCTAssertEqual(parsed, ControlRequest(id: 7, command: .status, arguments: [:]))
        let attach = try ControlCodec.parseRequest(#"{"execute":"attach","arguments":{"host":"0000:01:00.0","guest":"00:03.0","return-fd":true}}"#).get()
        XCTAssertNil(attach.id)
        XCTAssertEqual(attach.arguments, ["host": "0000:01:00.0", "guest": "00:03.0", "return-fd": true])
        // Arguments are optional; any JSON value is an id, null included.
        XCTAssertEqual(request(#"{"execute":"metrics"}"#), ControlRequest(command: .metrics))
        XCTAssertEqual(request(#"{"execute":"metrics","id":null}"#)?.id, .null)
        XCTAssertEqual(request(#"{"execute":"metrics","id":{"k":[1]}}"#)?.id, ["k": [1]])
        XCTAssertEqual(request("{\"execute\":\"status\"}\r")?.command, .status, "a CR before the newline is whitespace")
        XCTAssertEqual(request(#"{"execute":"log-level"}"#)?.command, .logLevel)
        // Every command of §2.3 parses to its case.
        for command in ControlCommand.allCases {
            XCTAssertEqual(request(#"{"execute":"\#(command.rawValue)"}"#)?.command, command)
        }
    }

    /// An unknown command is refused with the request's id, after the
    /// envelope checks: a request is well formed before its command counts.
    func testUnknownCommands() {
        XCTAssertEqual(refusal(#"{"execute":"frobnicate","id":4}"#), ControlFailure(id: 4, error: .unknownCommand("frobnicate")))
        XCTAssertEqual(refusal(#"{"execute":"Status"}"#)?.error.code, .unknownCommand, "names are case-sensitive")
        XCTAssertEqual(refusal(#"{"execute":"frobnicate","arguments":5}"#)?.error.code, .invalidArgument)
        XCTAssertEqual(refusal(#"{"execute":"frobnicate","extra":1}"#)?.error.code, .invalidArgument)
    }

    func testEnvelopeErrors() {
        let notJSON = refusal("{execute}")
        XCTAssertEqual(notJSON?.error.code.rawValue, "parse-error")
        XCTAssertNil(notJSON?.id)
        XCTAssertTrue(notJSON?.error.message.contains("invalid JSON at byte 1") ?? false, notJSON?.error.message ?? "")

        XCTAssertEqual(refusal("")?.error.code.rawValue, "parse-error")
        XCTAssertEqual(refusal("  ")?.error.message.hasPrefix("empty line"), true)
        let array = refusal(#"["execute","status"]"#)
        XCTAssertEqual(array?.error.code.rawValue, "parse-error")
        XCTAssertTrue(array?.error.message.contains("an array, not a JSON object") ?? false)

        let missing = refusal(#"{"arguments":{},"id":3}"#)
        XCTAssertEqual(missing, ControlFailure(id: 3, error: .missingArgument("execute")))

        let wrongType = refusal(#"{"execute":5,"id":"x"}"#)
        XCTAssertEqual(wrongType?.id, "x")
        XCTAssertEqual(wrongType?.error.code.rawValue, "invalid-argument")
        XCTAssertTrue(wrongType?.error.message.contains("\"execute\" must be a string") ?? false)

        XCTAssertEqual(refusal(#"{"execute":""}"#)?.error.code.rawValue, "invalid-argument")

        for bad in [#"[]"#, #""x""#, "null", "1"] {
            let arguments = refusal(#"{"execute":"status","arguments":\#(bad),"id":1}"#)
            XCTAssertEqual(arguments?.id, 1)
            XCTAssertEqual(arguments?.error.code.rawValue, "invalid-argument", bad)
            XCTAssertTrue(arguments?.error.message.contains("\"arguments\" must be an object") ?? false, bad)
        }

        let extra = refusal(#"{"execute":"status","argument":{},"id":2}"#)
        XCTAssertEqual(extra?.id, 2)
        XCTAssertEqual(extra?.error.code.rawValue, "invalid-argument")
        XCTAssertTrue(extra?.error.message.contains("\"argument\" is not a request member") ?? false)
    }

    func testReplyLines() {
        XCTAssertEqual(ControlCodec.successLine(id: 7, result: ["guest": "00:03.0", "unmapped": 3]),
                       "{\"id\":7,\"return\":{\"guest\":\"00:03.0\",\"unmapped\":3}}\n")
        XCTAssertEqual(ControlCodec.successLine(id: nil, result: [:]), "{\"return\":{}}\n")
        XCTAssertEqual(ControlCodec.successLine(id: .null, result: [:]), "{\"id\":null,\"return\":{}}\n")
        XCTAssertEqual(ControlCodec.errorLine(id: "a", error: ControlError(code: .unknownCommand, message: "no \"x\"")),
                       "{\"error\":{\"code\":\"unknown-command\",\"message\":\"no \\\"x\\\"\"},\"id\":\"a\"}\n")
        XCTAssertEqual(ControlCodec.errorLine(ControlFailure(id: nil, error: .missingArgument("guest"))),
                       "{\"error\":{\"code\":\"missing-argument\",\"message\":\"argument \\\"guest\\\" is required\"}}\n")
        XCTAssertEqual(ControlCodec.requestLine(command: "replay", arguments: ["all": true], id: 1),
                       "{\"arguments\":{\"all\":true},\"execute\":\"replay\",\"id\":1}\n")
        XCTAssertEqual(ControlCodec.requestLine(command: "status"), "{\"arguments\":{},\"execute\":\"status\"}\n")
    }

    func testRequestLineRoundTrip() throws {
        let line = ControlCodec.requestLine(command: "attach", arguments: ["group": 12, "guest": "00:03.0", "quota": .uint(.max)], id: 9)
        XCTAssertTrue(line.hasSuffix("\n"))
        XCTAssertFalse(line.dropLast().contains("\n"))
        let parsed = try ControlCodec.parseRequest(line.dropLast()).get()
        XCTAssertEqual(parsed, ControlRequest(id: 9, command: .attach, arguments: ["group": 12, "guest": "00:03.0", "quota": .uint(.max)]))
    }

    func testParseReply() throws {
        let ok = try ControlCodec.parseReply(ControlCodec.successLine(id: 7, result: ["level": "info"])).get()
        XCTAssertEqual(ok, ControlReply(id: 7, result: .success(["level": "info"])))
        let err = try ControlCodec.parseReply(ControlCodec.errorLine(id: nil, error: .noVMM)).get()
        XCTAssertEqual(err, ControlReply(id: nil, result: .failure(.noVMM)))

        let bad = [
            ("nope", "not valid JSON"),
            ("[]", "not a JSON object"),
            (#"{"id":1}"#, "neither"),
            (#"{"return":1,"error":{"code":"a","message":"b"}}"#, "both"),
            (#"{"return":1,"extra":2}"#, "unexpected member \"extra\""),
            (#"{"error":"x"}"#, "not an object"),
            (#"{"error":{"message":"b"}}"#, "no string \"code\""),
            (#"{"error":{"code":"a"}}"#, "no string \"message\""),
            (#"{"error":{"code":"a","message":"b","x":1}}"#, "other than"),
            // A code outside §2.2's list: refused, but its message is kept.
            (#"{"error":{"code":"bogus","message":"what happened"}}"#, #"error code "bogus", which is not one of parse-error, "#),
            (#"{"error":{"code":"bogus","message":"what happened"}}"#, "(its message: what happened)"),
        ]
        for (line, fragment) in bad {
            switch ControlCodec.parseReply(line) {
            case .success(let reply): XCTFail("accepted \(line) as \(reply)")
            case .failure(let error):
                XCTAssertEqual(error.code.rawValue, "parse-error", line)
                XCTAssertTrue(error.message.contains(fragment), "\(error.message) lacks \(fragment)")
            }
        }
    }

    func testErrorCodesAreTheDocumentedOnes() {
        XCTAssertEqual(ControlError.Code.allCases.map(\.rawValue), [
            "parse-error", "line-too-long", "missing-argument", "invalid-argument", "unknown-command",
            "permission-denied", "not-attached", "already-attached", "vfio-error", "no-vmm", "shutting-down", "internal",
        ])
        XCTAssertEqual("\(ControlError.Code.noVMM)", "no-vmm", "interpolation quotes the wire name")
        XCTAssertTrue(ControlError.unknownCommand("frob").message.contains("attach, detach, replay, status, mappings, metrics, log-level, shutdown"))
        XCTAssertEqual(ControlCommand(rawValue: "log-level"), .logLevel)
    }

    /// Each error the daemon and the codec send, as the line a client reads.
    /// The switch is over every code, so a new one needs its golden line here.
    func testEveryErrorCodeOnTheWire() throws {
        for code in ControlError.Code.allCases {
            let (error, line): (ControlError, String) = switch code {
            case .parseError:
                (.parseError("request is an array, not a JSON object"),
                 #"{"error":{"code":"parse-error","message":"request is an array, not a JSON object; send one JSON object per line, e.g. {\"execute\":\"status\"} (PROTOCOL.md §2.2)"}}"#)
            case .lineTooLong:
                (.lineTooLong(limit: 65536),
                 #"{"error":{"code":"line-too-long","message":"line longer than 65536 bytes without a newline; the connection is closed. Keep each request on one line of at most 65536 bytes (PROTOCOL.md §2.2)"}}"#)
            case .missingArgument:
                (.missingArgument("guest"), #"{"error":{"code":"missing-argument","message":"argument \"guest\" is required"}}"#)
            case .invalidArgument:
                (.invalidArgument("quota", "must be a positive number of mappings"),
                 #"{"error":{"code":"invalid-argument","message":"argument \"quota\" must be a positive number of mappings"}}"#)
            case .unknownCommand:
                (.unknownCommand("frob"),
                 #"{"error":{"code":"unknown-command","message":"unknown command \"frob\"; the commands are attach, detach, replay, status, mappings, metrics, log-level, shutdown (PROTOCOL.md §2.3)"}}"#)
            case .permissionDenied:
                (.permissionDenied(uid: 1000, gid: 100, pid: 42),
                 #"{"error":{"code":"permission-denied","message":"uid 1000 (gid 100, pid 42) may not use this daemon: it is not in access.uids and none of its groups is in access.gids; add the user to access.uids, or one of its groups to access.gids, in the daemon's configuration (docs/CONFIG.md), or connect as an allowed user"}}"#)
            case .notAttached:
                (.notAttached(guest: "00:09.0"),
                 #"{"error":{"code":"not-attached","message":"no device is attached as guest 00:09.0; `status` lists the attached devices"}}"#)
            case .alreadyAttached:
                (.alreadyAttached(guest: "00:03.0", to: "0000:01:00.0"),
                 #"{"error":{"code":"already-attached","message":"guest 00:03.0 is already attached to 0000:01:00.0; detach it first"}}"#)
            case .vfioError:
                (.vfioError("open on /dev/vfio/12 failed: Device or resource busy (errno 16)"),
                 #"{"error":{"code":"vfio-error","message":"open on /dev/vfio/12 failed: Device or resource busy (errno 16)"}}"#)
            case .noVMM:
                (.noVMM,
                 #"{"error":{"code":"no-vmm","message":"this command needs the guest IOMMU state, and no VMM has sent it yet (no memory table); start the VMM or wait for it to connect to the event channel"}}"#)
            case .shuttingDown:
                (.shuttingDown, #"{"error":{"code":"shutting-down","message":"the daemon is stopping and takes no new work"}}"#)
            case .internal:
                (.tooManyClients(limit: 16),
                 #"{"error":{"code":"internal","message":"too many control clients (control.max-clients = 16); try again later, or raise control.max-clients"}}"#)
            }
            XCTAssertEqual(error.code, code)
            XCTAssertEqual(ControlCodec.errorLine(id: nil, error: error), line + "\n", "\(code)")
            XCTAssertEqual(try ControlCodec.parseReply(line).get(), ControlReply(id: nil, result: .failure(error)), "\(code)")
        }
        XCTAssertEqual(ControlError.alreadyAttached(host: "0000:01:00.0", as: "00:04.0").message,
                       "host device 0000:01:00.0 is already attached as guest 00:04.0; detach it first")
    }

    /// PROTOCOL.md §2.2 lists exactly the codes of `ControlError.Code`.
    func testProtocolDocumentListsEveryCode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: "Error codes:"))
        let paragraph = text[start.upperBound...].prefix { $0 != "#" }.split(separator: "\n\n", maxSplits: 1).first ?? ""
        // The codes are the backquoted words outside parentheses (which explain them).
        var depth = 0
        let outside = paragraph.filter { c in
            if c == "(" { depth += 1 } else if c == ")" { depth -= 1; return false }
            return depth == 0
        }
        var listed: [String] = []
        var rest = outside[...]
        while let open = rest.firstIndex(of: "`") {
            let after = rest.index(after: open)
            guard let close = rest[after...].firstIndex(of: "`") else { break }
            listed.append(String(rest[after ..< close]))
            rest = rest[rest.index(after: close)...]
        }
        XCTAssertEqual(listed, ControlError.Code.allCases.map(\.rawValue))
    }
}
