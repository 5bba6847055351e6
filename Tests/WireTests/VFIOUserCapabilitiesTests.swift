@testable import Wire
import XCTest

/// The VERSION capabilities: QEMU's own text, the spec's defaults, and each refusal.
final class VFIOUserCapabilitiesTests: XCTestCase {
    private func version(_ text: String, nul: Bool = true, limits: VFIOUserLimits = VFIOUserLimits()) -> Result<VFIOUserCommandMessage, VFIOUserWireError> {
        let data = Array(text.utf8) + (nul ? [0] : [])
        let bytes = vfioUserHeaderBytes(id: 0, command: 1, size: UInt32(20 + data.count)) + le(UInt16(0)) + le(UInt16(0)) + data
        return VFIOUserCodec.decodeCommand(bytes, limits: limits)
    }

    private func capabilities(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> VFIOUserCapabilities? {
        switch version(text) {
        case .success(let message):
            guard case .version(let version) = message.request else { return nil }
            return version.capabilities
        case .failure(let error):
            XCTFail("refused: \(error)", file: file, line: line)
            return nil
        }
    }

    private func refusal(_ text: String, nul: Bool = true, limits: VFIOUserLimits = VFIOUserLimits(), mentions word: String,
                         file: StaticString = #filePath, line: UInt = #line) -> VFIOUserWireError.Reason? {
        guard let error = vfioUserRefusal(version(text, nul: nul, limits: limits), file: file, line: line) else { return nil }
        XCTAssertTrue(error.message.contains(word), "message lacks \"\(word)\": \(error.message)", file: file, line: line)
        XCTAssertEqual(error.header?.command, 1, "the header is kept for the error reply", file: file, line: line)
        return error.reason
    }

    func testQEMUCapabilities() {
        let caps = capabilities(qemuVersionJSON)
        XCTAssertEqual(caps?.maxMessageFDs, 16)
        XCTAssertEqual(caps?.maxDataTransferSize, 1_048_576)
        XCTAssertEqual(caps?.pageSizes, 4096)
        XCTAssertEqual(caps?.maxDMAMaps, 65535)
        XCTAssertEqual(caps?.migration, VFIOUserCapabilities.Migration(maxBitmapSize: 268_435_456, pageSize: 4096))
        XCTAssertEqual(caps?.writeMultiple, true)
    }

    /// Absent members take the spec's defaults; unknown ones are ignored.
    func testDefaults() {
        let expected = VFIOUserCapabilities(maxMessageFDs: 1, maxDataTransferSize: 1_048_576, pageSizes: 4096, maxDMAMaps: 65535,
                                            migration: nil, writeMultiple: false)
        XCTAssertEqual(capabilities("{}"), expected)
        XCTAssertEqual(capabilities(#"{"capabilities": {}}"#), expected)
        XCTAssertEqual(capabilities(#"{"capabilities": {"twin_socket": {"supported": true}}, "other": 1}"#), expected)
        XCTAssertEqual(capabilities(#"{"capabilities": {"max_msg_fds": 4}}"#)?.maxMessageFDs, 4)
    }

    func testRefusals() {
        XCTAssertEqual(refusal(qemuVersionJSON, nul: false, mentions: "does not end in NUL"), .malformed)
        XCTAssertEqual(refusal("{\"capabilities\": ", mentions: "not valid JSON"), .malformed)
        XCTAssertEqual(refusal("[]", mentions: "it must be an object"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": 3}"#, mentions: "\"capabilities\" is a JSON"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"max_msg_fds": "16"}}"#, mentions: "capabilities.max_msg_fds"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"max_msg_fds": -1}}"#, mentions: "from 0 to 4294967295"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"max_dma_maps": 4294967296}}"#, mentions: "capabilities.max_dma_maps"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"pgsizes": 4096.0}}"#, mentions: "capabilities.pgsizes"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"write_multiple": 1}}"#, mentions: "true or false"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"migration": {"pgsize": 4096}}}"#, mentions: "both"), .malformed)
        XCTAssertEqual(refusal(#"{"capabilities": {"migration": {"pgsize": 4096, "max_bitmap_size": true}}}"#,
                               mentions: "capabilities.migration.max_bitmap_size"), .malformed)
        let long = "{\"capabilities\": {}, \"pad\": \"" + String(repeating: "x", count: 100) + "\"}"
        XCTAssertEqual(refusal(long, limits: VFIOUserLimits(maxVersionData: 64), mentions: "above the limit of 64"), .tooLarge)
    }

    /// The JSON the server would send back parses to the same capabilities.
    func testJSONRoundTrip() throws {
        let caps = VFIOUserCapabilities(maxMessageFDs: 2, maxDataTransferSize: 4096, pageSizes: 0x4000_1000, maxDMAMaps: 1,
                                        migration: .init(maxBitmapSize: .max, pageSize: 4096), writeMultiple: false)
        XCTAssertEqual(try VFIOUserCapabilities(json: caps.json), caps)
        XCTAssertEqual(try VFIOUserCapabilities(json: JSONValue.parse(caps.json.serialized)), caps)
    }
}
