import XCTest
@testable import Daemon

final class StatusReporterTests: XCTestCase {
    func testAChangeGoesAtOnceThenAtMostOncePerIntervalAndTheLastOneAlways() {
        let reporter = StatusReporter<Int>(interval: .seconds(1))
        let t0 = ContinuousClock.now
        XCTAssertEqual(reporter.offer(1, now: t0), 1, "nothing sent yet: at once")
        XCTAssertNil(reporter.due)
        XCTAssertNil(reporter.offer(1, now: t0 + .milliseconds(10)), "unchanged")
        XCTAssertNil(reporter.offer(2, now: t0 + .milliseconds(100)), "held: one went 100 ms ago")
        XCTAssertEqual(reporter.due, t0 + .seconds(1))
        XCTAssertNil(reporter.offer(3, now: t0 + .milliseconds(500)))
        XCTAssertEqual(reporter.due, t0 + .seconds(1))
        XCTAssertEqual(reporter.offer(4, now: t0 + .seconds(1)), 4, "the trailing update is the latest value, not the first held")
        XCTAssertNil(reporter.due)
        XCTAssertEqual(reporter.sent, 4)
    }

    func testAChangeThatReturnsToWhatWasSentIsDropped() {
        let reporter = StatusReporter<Int>(interval: .seconds(1))
        let t0 = ContinuousClock.now
        _ = reporter.offer(1, now: t0)
        XCTAssertNil(reporter.offer(2, now: t0 + .milliseconds(100)))
        XCTAssertNotNil(reporter.due)
        XCTAssertNil(reporter.offer(1, now: t0 + .milliseconds(200)), "back to what systemd shows")
        XCTAssertNil(reporter.due, "nothing left to send")
    }

    func testAStatusSentWithAnotherMessageCounts() {
        let reporter = StatusReporter<Int>(interval: .seconds(1))
        let t0 = ContinuousClock.now
        reporter.record(5, at: t0)
        XCTAssertNil(reporter.offer(5, now: t0 + .milliseconds(1)))
        XCTAssertNil(reporter.offer(6, now: t0 + .milliseconds(1)), "READY=1 carried one a moment ago")
        XCTAssertEqual(reporter.offer(6, now: t0 + .seconds(2)), 6)
    }

    func testTheLineSystemdShows() {
        XCTAssertEqual(DaemonStatus(devices: 2, vmmPhase: "ready", mappings: 17).description, "2 device(s), VMM ready, 17 mapping(s)")
        XCTAssertEqual(DaemonStatus(devices: 1, vmmPhase: nil, mappings: 0).description, "1 device(s), no VMM, 0 mapping(s)")
    }
}
