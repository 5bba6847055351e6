import VTdGuest
import XCTest

/// SplitMix64 and its draws are what a printed seed means: these pin them.
final class SplitMix64Tests: XCTestCase {
    func testTheSequenceIsSplitMix64() {
        // The published reference outputs for seed 0 (Vigna's splitmix64.c).
        var rng = SplitMix64(seed: 0)
        XCTAssertEqual([rng.next(), rng.next(), rng.next()],
                       [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4, 0x06c4_5d18_8009_454f])
    }

    /// The fuzz harnesses' committed seeds were made with `next() % n`.
    func testBelowIsTheModuloOfOneDraw() {
        for n in [2, 3, 4, 17, 24, 64, 1000] {
            var a = SplitMix64(seed: UInt64(n))
            var b = a
            for _ in 0..<200 {
                XCTAssertEqual(a.below(n), Int(b.next() % UInt64(n)), "n \(n)")
            }
        }
    }

    func testBelowOneDrawsNothing() {
        var rng = SplitMix64(seed: 5)
        let before = rng.state
        XCTAssertEqual(rng.below(1), 0)
        XCTAssertEqual(rng.state, before)
    }

    func testInRangeCoversItsBoundsOnly() {
        var rng = SplitMix64(seed: 9)
        var seen = Set<Int>()
        for _ in 0..<2000 { seen.insert(rng.inRange(5...8)) }
        XCTAssertEqual(seen, [5, 6, 7, 8])
    }

    func testUnitIsInTheHalfOpenInterval() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2000 {
            let u = rng.unit()
            XCTAssertTrue(u >= 0 && u < 1, "\(u)")
        }
    }

    func testShuffleKeepsTheElementsAndPickTakesOne() {
        var rng = SplitMix64(seed: 13)
        var a = Array(0..<50)
        rng.shuffle(&a)
        XCTAssertEqual(a.sorted(), Array(0..<50))
        XCTAssertNotEqual(a, Array(0..<50))
        XCTAssertNil(rng.pick([Int]()))
        XCTAssertEqual(rng.pick([42]), 42)
    }
}
