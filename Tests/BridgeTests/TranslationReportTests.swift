@testable import Bridge
import JSON
import VTdBridgeTestSupport
import VTd
import XCTest

/// The report `vtdbridgectl walk --json` prints and the `mappings` command
/// returns (PROTOCOL.md §2.3): built as a JSON value and written by the one
/// serializer, so its bytes are fixed here.
final class TranslationReportTests: SyncTestCase {
    func testJSONGolden() throws {
        try attach(sid, domain: 5)
        var batch: [InvalidationDescriptor] = []
        batch += try guest.writer.map(domain: 5, iova: 0x1000, gpa: 0x8000)
        batch += try guest.writer.map(domain: 5, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21, permission: .read)
        batch += try guest.writer.map(domain: 5, iova: 0x3000, gpa: 0x1_0000_0000)  // beyond the 64 MiB of RAM
        _ = bridge.process(batch)
        let report = TranslationReport(space: space(sid), memory: guest.memory)
        XCTAssertEqual(report.json.serialized,
                       #"{"device":"00:03.0","domain":5,"#
                       + #""faults":[{"detail":"gpa 0x100000000 is not guest RAM","iova":"0x3000","level":null,"reason":"leaf-outside-ram","value":"0x100000000"}],"#
                       + #""levels":4,"mappings":["#
                       + #"{"gpa":"0x8000","iova":"0x1000","read":true,"size":"0x1000","write":true},"#
                       + #"{"gpa":"0x400000","iova":"0x200000","read":true,"size":"0x200000","write":false}],"#
                       + #""mode":"translated"}"#)
    }

    func testAModeWithoutDomainOrLevelsWritesNull() throws {
        try bridge.attach(sid2, backend: RecordingBackend())
        let report = TranslationReport(space: space(sid2), memory: guest.memory)
        XCTAssertEqual(report.json.serialized,
                       #"{"device":"00:04.0","domain":null,"faults":[],"levels":null,"mappings":[],"mode":"not-present"}"#)
    }

    /// A mapping whose host address no current region holds has no GPA: null.
    func testAMappingOutsideTheMemoryTableHasANullGPA() throws {
        try attach(sid, domain: 1)
        _ = bridge.process(try guest.writer.map(domain: 1, iova: 0x1000, gpa: 0x8000))
        let report = TranslationReport(space: space(sid), memory: nil)
        XCTAssertEqual(report.json["mappings"]?[0]?["gpa"], .null)
        XCTAssertEqual(report.json["mappings"]?[0]?["iova"], "0x1000")
    }

    /// Details are free text: the serializer escapes what RFC 8259 requires.
    func testFaultDetailIsEscaped() throws {
        try attach(sid, domain: 1)
        space(sid).faults.record(TranslationFault(reason: .entryReserved, iova: 0x1000, level: 2, value: 0xff, detail: "say \"no\"\n"),
                                 sourceID: sid, logger: GuestFixture.quietLogger)
        let json = TranslationReport(space: space(sid), memory: guest.memory).json.serialized
        XCTAssertTrue(json.contains(#""detail":"say \"no\"\n","iova":"0x1000","level":2,"reason":"entry-reserved","value":"0xff""#), json)
    }
}
