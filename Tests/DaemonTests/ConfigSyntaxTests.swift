import XCTest
@testable import Daemon
import Wire

/// The config file is read by the control socket's JSON parser: one
/// grammar, one byte-order-mark policy, the same words for the same fault,
/// with line and column added for the file.
final class ConfigSyntaxTests: XCTestCase {
    let scratch = ConfigScratch()

    private func fileError(_ bytes: [UInt8]) -> ConfigError? {
        do {
            let document = try ConfigFile.parse(bytes, path: "vm.json")
            XCTFail("parsed: \(document.root)")
            return nil
        } catch {
            return error
        }
    }

    func testTheFileAndTheControlSocketReportTheSameFault() throws {
        let texts = [
            #"{"name": "vm0",}"#, #"{"name" "vm0"}"#, #"{"name": vm0}"#, #"{"a": 1, "a": 2}"#,
            #"{"quota": 01}"#, #"{"name": "x\y"}"#, #"{"name": tru}"#, #"{} {}"#, "{\"name\": \"vm0", "[1,]",
        ]
        for text in texts {
            let expected: JSONParseError
            do {
                let value = try JSONValue.parse(text)
                return XCTFail("\(text) parsed as \(value)")
            } catch {
                expected = error
            }
            let config = try XCTUnwrap(fileError(Array(text.utf8)), text)
            XCTAssertEqual(config.message, "not valid JSON at line 1, column \(expected.column): \(expected.message)", text)
            guard case let .failure(failure) = ControlCodec.parseRequest(text) else { return XCTFail("\(text) accepted as a request") }
            XCTAssertTrue(failure.error.message.contains("invalid JSON at byte \(expected.offset): \(expected.message)"), failure.error.message)
        }
    }

    func testEmptyFileIsNamedAsSuch() {
        XCTAssertEqual(fileError([])?.message, "not valid JSON at line 1, column 1: the file is empty; expected a JSON object")
        XCTAssertEqual(fileError(Array("  \n\t".utf8))?.message, "not valid JSON at line 2, column 2: the file is empty; expected a JSON object")
        XCTAssertEqual(fileError([0xef, 0xbb, 0xbf, 0x0a])?.message, "not valid JSON at line 2, column 1: the file is empty; expected a JSON object")
    }

    /// A file saved with a byte-order mark loaded before the parsers became
    /// one, and still does; its lines and columns ignore the mark.
    func testAByteOrderMarkAtTheStartIsSkipped() throws {
        let path = scratch.write("\u{FEFF}{\n  \"name\": \"vm7\"\n}\n")
        let config = try DaemonConfig.load(file: path, environment: [:], overrides: [:])
        XCTAssertEqual(config.name, "vm7")

        let bad = scratch.write("\u{FEFF}{\"mapping-quota\": \"many\"}", name: "b.json")
        let error = try configLoadError(file: bad)
        XCTAssertEqual(error.source, "\(bad), line 1")
        XCTAssertEqual(fileError([0xef, 0xbb, 0xbf] + Array("{\"a\" 1}".utf8))?.message,
                       "not valid JSON at line 1, column 6: expected \":\" after the key \"a\", found '1'")
        XCTAssertEqual(fileError(Array("{\"a\": \u{FEFF}1}".utf8))?.message.contains("found a byte-order mark (U+FEFF)"), true)
    }

    func testNumbersAreQuotedAsWritten() throws {
        let exponent = scratch.write(#"{"mapping-quota": 1e3}"#, name: "a.json")
        var error = try configLoadError(file: exponent)
        XCTAssertEqual(error.message, "is the number 1e3; expected a whole number")
        let aboveInt64 = scratch.write(#"{"mapping-quota": 9223372036854775808}"#, name: "b.json")
        error = try configLoadError(file: aboveInt64)
        XCTAssertEqual(error.message, "9223372036854775808 is too large; expected a whole number within 64 bits")
        let infinite = scratch.write(#"{"mapping-quota": 1e400}"#, name: "c.json")
        error = try configLoadError(file: infinite)
        XCTAssertEqual(error.message, "not valid JSON at line 1, column 19: number 1e400 is out of the range of a 64-bit float")
    }
}
