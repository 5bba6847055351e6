import JournalLogging
import Logging
import XCTest

final class JournalFieldNameTests: XCTestCase {
    func testMetadataKeysBecomeUpperCaseFieldNames() {
        XCTAssertEqual(JournalFieldName.sanitize("device"), "DEVICE")
        XCTAssertEqual(JournalFieldName.sanitize("iova"), "IOVA")
        XCTAssertEqual(JournalFieldName.sanitize("fault-reason"), "FAULT_REASON")
        XCTAssertEqual(JournalFieldName.sanitize("event.socket"), "EVENT_SOCKET")
        XCTAssertEqual(JournalFieldName.sanitize("Mixed_Case9"), "MIXED_CASE9")
        XCTAssertEqual(JournalFieldName.sanitize("größe"), "GR__E", "non-ASCII letters are not field characters")
    }

    func testNamesJournaldWouldRefuseAreRepaired() {
        XCTAssertEqual(JournalFieldName.sanitize("_PID"), "PID", "a leading underscore is journald's own (trusted) field")
        XCTAssertEqual(JournalFieldName.sanitize("__x"), "X")
        XCTAssertEqual(JournalFieldName.sanitize("2nd"), "F_2ND", "a field name may not start with a digit")
        XCTAssertNil(JournalFieldName.sanitize(""))
        XCTAssertNil(JournalFieldName.sanitize("___"))
        let long = JournalFieldName.sanitize(String(repeating: "k", count: 100))
        XCTAssertEqual(long, String(repeating: "K", count: 64))
    }

    func testEveryLevelHasItsSyslogPriority() {
        let mapped = Logger.Level.allCases.map { SyslogPriority($0).rawValue }
        // trace, debug, info, notice, warning, error, critical
        XCTAssertEqual(mapped, [7, 7, 6, 5, 4, 3, 2])
    }

    func testJournalStreamMustNameStandardError() {
        let stderr = (device: UInt64(2049), inode: UInt64(123_456))
        XCTAssertEqual(LogDestination.detect(journalStream: "2049:123456", standardError: stderr), .journal)
        XCTAssertEqual(LogDestination.detect(journalStream: "2049:123457", standardError: stderr), .standardError,
                       "inherited by a process whose stderr was redirected")
        XCTAssertEqual(LogDestination.detect(journalStream: "2050:123456", standardError: stderr), .standardError)
        XCTAssertEqual(LogDestination.detect(journalStream: nil, standardError: stderr), .standardError)
        XCTAssertEqual(LogDestination.detect(journalStream: "2049", standardError: stderr), .standardError)
        XCTAssertEqual(LogDestination.detect(journalStream: "x:y", standardError: stderr), .standardError)
        XCTAssertEqual(LogDestination.detect(journalStream: "2049:123456:1", standardError: stderr), .standardError)
    }

    func testSyslogLinesCarryThePriorityPrefix() {
        XCTAssertEqual(SyslogLine.format(priority: .warning, text: "translation fault device=00:03.0 iova=0x1000"),
                       "<4>translation fault device=00:03.0 iova=0x1000\n")
        XCTAssertEqual(SyslogLine.format(priority: .error, text: "a\nb k=c\nd"),
                       "<3>a b k=c d\n", "one line, so that journald keeps the priority for all of it")
    }
}
