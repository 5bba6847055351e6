@testable import Wire
import XCTest

final class LineDecoderTests: XCTestCase {
    func lines(_ decoder: inout LineDecoder) -> [Result<String, ControlError>] {
        var out: [Result<String, ControlError>] = []
        while let next = decoder.next() { out.append(next) }
        return out
    }

    func testSplitsLines() {
        var decoder = LineDecoder()
        decoder.append("{\"execute\":\"status\"}\n{\"exe")
        XCTAssertEqual(lines(&decoder), [.success("{\"execute\":\"status\"}")])
        XCTAssertEqual(decoder.bufferedByteCount, 5)
        decoder.append("cute\":\"metrics\"}\n\nlast")
        XCTAssertEqual(lines(&decoder), [.success("{\"execute\":\"metrics\"}"), .success("")])
        decoder.append(Array("\n".utf8))
        XCTAssertEqual(lines(&decoder), [.success("last")])
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testByteByByteMatchesWhole() {
        let text = (0 ..< 300).map { "{\"execute\":\"status\",\"id\":\($0),\"x\":\"é😀\"}\n" }.joined()
        var whole = LineDecoder()
        whole.append(text)
        let expected = lines(&whole)
        XCTAssertEqual(expected.count, 300)
        var split = LineDecoder()
        var collected: [Result<String, ControlError>] = []
        for byte in text.utf8 {
            split.append([byte])
            collected += lines(&split)
        }
        XCTAssertEqual(collected, expected)
    }

    func testLimitCountsTheLineWithoutItsNewline() {
        var decoder = LineDecoder(maxLineBytes: 8)
        decoder.append("12345678\n")
        XCTAssertEqual(lines(&decoder), [.success("12345678")])
        decoder.append("123456789\n")
        XCTAssertEqual(lines(&decoder), [.failure(.lineTooLong(limit: 8))])
        XCTAssertTrue(decoder.isPoisoned)
    }

    func testLineTooLongWithoutNewlinePoisons() {
        var decoder = LineDecoder()
        let chunk = [UInt8](repeating: 0x20, count: 65_536)
        decoder.append(chunk)
        XCTAssertNil(decoder.next(), "exactly the limit, still waiting for the newline")
        decoder.append([0x20])
        let result = decoder.next()
        XCTAssertEqual(result, .failure(.lineTooLong(limit: 65_536)))
        if case .failure(let error)? = result {
            XCTAssertEqual(error.code.rawValue, "line-too-long")
            XCTAssertTrue(error.message.contains("65536"))
        }
        // Poisoned: further input is ignored and nothing more comes out.
        decoder.append("{\"execute\":\"status\"}\n")
        XCTAssertNil(decoder.next())
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testInvalidUTF8FailsThatLineOnly() {
        var decoder = LineDecoder()
        decoder.append([0x7b, 0xff, 0x7d, 0x0a] + Array("{\"execute\":\"status\"}\n".utf8))
        let out = lines(&decoder)
        XCTAssertEqual(out.count, 2)
        guard case .failure(let error) = out[0] else { return XCTFail("invalid UTF-8 accepted") }
        XCTAssertEqual(error.code.rawValue, "parse-error")
        XCTAssertTrue(error.message.contains("byte 0xff at offset 1"), error.message)
        XCTAssertEqual(out[1], .success("{\"execute\":\"status\"}"))
        XCTAssertFalse(decoder.isPoisoned)
    }

    func testLongStreamsStayCompact() {
        var decoder = LineDecoder()
        let line = Array("{\"execute\":\"status\"}\n".utf8)
        for _ in 0 ..< 10_000 {
            decoder.append(line + line.prefix(3))
            XCTAssertEqual(decoder.next(), .success("{\"execute\":\"status\"}"))
            XCTAssertNil(decoder.next())
            decoder.append(Array(line.dropFirst(3)))
            XCTAssertEqual(decoder.next(), .success("{\"execute\":\"status\"}"))
        }
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }
}
