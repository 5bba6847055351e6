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
        XCTAssertEqual(parsed, ControlRequest(id: 7, command: "status", arguments: [:]))
        XCTAssertEqual(parsed.knownCommand, .status)
        let attach = try ControlCodec.parseRequest(#"{"execute":"attach","arguments":{"host":"0000:01:00.0","guest":"00:03.0","return-fd":true}}"#).get()
        XCTAssertNil(attach.id)
        XCTAssertEqual(attach.arguments, ["host": "0000:01:00.0", "guest": "00:03.0", "return-fd": true])
        // Arguments are optional; any JSON value is an id, null included.
        XCTAssertEqual(request(#"{"execute":"metrics"}"#), ControlRequest(command: "metrics"))
        XCTAssertEqual(request(#"{"execute":"metrics","id":null}"#)?.id, .null)
        XCTAssertEqual(request(#"{"execute":"metrics","id":{"k":[1]}}"#)?.id, ["k": [1]])
        XCTAssertEqual(request("{\"execute\":\"status\"}\r")?.command, "status", "a CR before the newline is whitespace")
        // Unknown commands pass the envelope: the dispatcher answers them.
        XCTAssertEqual(request(#"{"execute":"frobnicate"}"#)?.knownCommand, nil)
    }

    func testEnvelopeErrors() {
        let notJSON = refusal("{execute}")
        XCTAssertEqual(notJSON?.error.code, "parse-error")
        XCTAssertNil(notJSON?.id)
        XCTAssertTrue(notJSON?.error.message.contains("invalid JSON at byte 1") ?? false, notJSON?.error.message ?? "")

        XCTAssertEqual(refusal("")?.error.code, "parse-error")
        XCTAssertEqual(refusal("  ")?.error.message.hasPrefix("empty line"), true)
        let array = refusal(#"["execute","status"]"#)
        XCTAssertEqual(array?.error.code, "parse-error")
        XCTAssertTrue(array?.error.message.contains("an array, not a JSON object") ?? false)

        let missing = refusal(#"{"arguments":{},"id":3}"#)
        XCTAssertEqual(missing, ControlFailure(id: 3, error: .missingArgument("execute")))

        let wrongType = refusal(#"{"execute":5,"id":"x"}"#)
        XCTAssertEqual(wrongType?.id, "x")
        XCTAssertEqual(wrongType?.error.code, "invalid-argument")
        XCTAssertTrue(wrongType?.error.message.contains("\"execute\" must be a string") ?? false)

        XCTAssertEqual(refusal(#"{"execute":""}"#)?.error.code, "invalid-argument")

        for bad in [#"[]"#, #""x""#, "null", "1"] {
            let arguments = refusal(#"{"execute":"status","arguments":\#(bad),"id":1}"#)
            XCTAssertEqual(arguments?.id, 1)
            XCTAssertEqual(arguments?.error.code, "invalid-argument", bad)
            XCTAssertTrue(arguments?.error.message.contains("\"arguments\" must be an object") ?? false, bad)
        }

        let extra = refusal(#"{"execute":"status","argument":{},"id":2}"#)
        XCTAssertEqual(extra?.id, 2)
        XCTAssertEqual(extra?.error.code, "invalid-argument")
        XCTAssertTrue(extra?.error.message.contains("\"argument\" is not a request member") ?? false)
    }

    func testReplyLines() {
        XCTAssertEqual(ControlCodec.successLine(id: 7, result: ["guest": "00:03.0", "unmapped": 3]),
                       "{\"id\":7,\"return\":{\"guest\":\"00:03.0\",\"unmapped\":3}}\n")
        XCTAssertEqual(ControlCodec.successLine(id: nil, result: [:]), "{\"return\":{}}\n")
        XCTAssertEqual(ControlCodec.successLine(id: .null, result: [:]), "{\"id\":null,\"return\":{}}\n")
        XCTAssertEqual(ControlCodec.errorLine(id: "a", error: ControlError(code: "unknown-command", message: "no \"x\"")),
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
        XCTAssertEqual(parsed, ControlRequest(id: 9, command: "attach", arguments: ["group": 12, "guest": "00:03.0", "quota": .uint(.max)]))
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
        ]
        for (line, fragment) in bad {
            switch ControlCodec.parseReply(line) {
            case .success(let reply): XCTFail("accepted \(line) as \(reply)")
            case .failure(let error):
                XCTAssertEqual(error.code, "parse-error", line)
                XCTAssertTrue(error.message.contains(fragment), "\(error.message) lacks \(fragment)")
            }
        }
    }

    func testErrorCodesAreTheDocumentedOnes() {
        XCTAssertEqual(ControlError.Code.all, [
            "parse-error", "line-too-long", "missing-argument", "invalid-argument", "unknown-command",
            "permission-denied", "not-attached", "already-attached", "vfio-error", "caching-mode-required",
            "no-vmm", "shutting-down", "internal",
        ])
        let constructed: [ControlError] = [
            .parseError("x"), .lineTooLong, .missingArgument("a"), .invalidArgument("a", "b"), .unknownCommand("c"),
            .permissionDenied, .notAttached(guest: "00:03.0"), .alreadyAttached(guest: "00:03.0"), .vfioError("v"),
            .cachingModeRequired, .noVMM, .shuttingDown, .internal("i"),
        ]
        XCTAssertEqual(constructed.map(\.code), ControlError.Code.all)
        XCTAssertTrue(ControlError.unknownCommand("frob").message.contains("attach, detach, replay, status, mappings, metrics, log-level, shutdown"))
        XCTAssertEqual(ControlCommand(rawValue: "log-level"), .logLevel)
    }
}
