import Bridge
import XCTest

final class DurationNanosecondsTests: XCTestCase {
    func testWholeNanosecondsAcrossTheSecondBoundary() {
        XCTAssertEqual((Duration.seconds(2) + .nanoseconds(5)).nanosecondCount, 2_000_000_005)
        XCTAssertEqual(Duration.microseconds(1500).nanosecondCount, 1_500_000)
        XCTAssertEqual(Duration.zero.nanosecondCount, 0)
        // Below a nanosecond is dropped, not rounded.
        XCTAssertEqual((Duration.nanoseconds(7) + .init(secondsComponent: 0, attosecondsComponent: 999_999_999)).nanosecondCount, 7)
    }
}
