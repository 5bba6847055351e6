import Bridge
import VTd
import VTdBridgeFuzzing
import VTdBridgeTestSupport
import XCTest

/// Replays every committed fuzz input — the seed corpora in
/// Tests/Fuzz/corpus/<target>/ and the crash reproducers in
/// Tests/Fuzz/regressions/<target>/ — through the same harness functions the
/// libFuzzer executables call, without the fuzzer (docs/RELIABILITY.md,
/// "Fuzzing"). A reproducer stays here after its fix.
final class FuzzRegressionTests: XCTestCase {
    /// Tests/Fuzz, found from this file's path.
    static let fuzzDirectory: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2) // FuzzRegressionTests/FuzzRegressionTests.swift
        return parts.joined(separator: "/") + "/Fuzz"
    }()

    func replay(_ target: FuzzTarget, file: StaticString = #filePath, line: UInt = #line) {
        let corpus = FuzzDriver.listFiles("\(Self.fuzzDirectory)/corpus/\(target.rawValue)")
        let regressions = FuzzDriver.listFiles("\(Self.fuzzDirectory)/regressions/\(target.rawValue)")
        XCTAssertFalse(corpus.isEmpty, "no corpus in \(Self.fuzzDirectory)/corpus/\(target.rawValue)", file: file, line: line)
        for path in corpus + regressions {
            guard let bytes = FuzzDriver.readFile(path) else {
                XCTFail("cannot read \(path)", file: file, line: line)
                continue
            }
            XCTAssertEqual(target.run(bytes), .ok, path, file: file, line: line)
        }
    }

    func testFramesCorpusAndRegressions() { replay(.frames) }
    func testControlCorpusAndRegressions() { replay(.control) }
    func testSyncCorpusAndRegressions() { replay(.sync) }
    func testVFIOUserCorpusAndRegressions() { replay(.vfioUser) }

    /// The committed seeds are what the generator writes today, so a change
    /// of an input format cannot leave stale seeds behind
    /// (regenerate with `make fuzz-seeds`).
    func testCommittedSeedsMatchTheGenerator() {
        for target in FuzzTarget.allCases {
            for seed in target.seeds {
                let path = "\(Self.fuzzDirectory)/corpus/\(target.rawValue)/\(seed.name)"
                XCTAssertEqual(FuzzDriver.readFile(path), seed.bytes, "\(path) differs from the generated seed; run make fuzz-seeds")
            }
        }
    }

    // MARK: - NOTIFY with the all-ones address mask (found by FuzzSync, fixed)
    //
    // The codec accepts address_mask 0xffff_ffff_ffff_ffff (a 2^64-byte
    // range; QEMU's unmap-everything notification carries it) and the daemon
    // turns it into a NotifierEvent of size mask &+ 1 = 0. recordNotification
    // used to compute end = iova + 0: an UNMAP removed nothing, and a MAP
    // stored a zero-length NotifiedMapping at IOVA 0 that broke
    // IOVAOrderedMap's "ends are sorted like starts" (its binary searches then
    // skipped entries). Now an UNMAP of it empties the space and a MAP of it
    // is refused. Reproducers: regressions/FuzzSync/notify-unmap-whole-space,
    // notify-whole-space-mask-found-by-fuzzer (replayed above).

    static let sid = SourceID(rawValue: 0x18)

    func notifierBridge() throws -> (GuestIOMMU, RecordingBackend) {
        let guest = try GuestFixture(ramSize: 4 << 20, tableAreaSize: 1 << 20)
        let bridge = try GuestIOMMU(caps: guest.caps, logger: GuestFixture.quietLogger)
        try bridge.setCapabilities(guest.caps, source: .notifier)
        _ = bridge.setMemory(guest.memory)
        _ = bridge.setTranslationEnabled(true)
        let backend = RecordingBackend()
        try bridge.attach(Self.sid, backend: backend)
        return (bridge, backend)
    }

    func testNotifiedUnmapOfTheWholeSpaceUnmapsEverything() throws {
        let (bridge, backend) = try notifierBridge()
        _ = bridge.notify([NotifierEvent(sourceID: Self.sid, iova: 0x1000, gpa: 0x8000, size: 0x1000, permission: .readWrite)])
        XCTAssertEqual(backend.mappings.count, 1)
        let result = bridge.notify([NotifierEvent(sourceID: Self.sid, iova: 0, gpa: 0, size: 0, permission: [])])
        XCTAssertNil(result.rejected)
        XCTAssertEqual(backend.mappings.count, 0, "an UNMAP of the whole 2^64-byte space (address_mask all ones) left \(backend.mappings.count) mapping(s) in place")
    }

    func testNotifiedMapAfterAWholeSpaceMapIsMapped() throws {
        let (bridge, backend) = try notifierBridge()
        _ = bridge.notify([NotifierEvent(sourceID: Self.sid, iova: 0, gpa: 0, size: 0, permission: .readWrite)])
        let result = bridge.notify([NotifierEvent(sourceID: Self.sid, iova: 0, gpa: 0x8000, size: 0x1000, permission: .readWrite)])
        XCTAssertNil(result.rejected)
        XCTAssertEqual(result.report.failures, [])
        XCTAssertEqual(backend.mappings.count, 1, "a MAP at IOVA 0 after a whole-space notification was not mapped")
    }

    // A sync cut by the walk budget kept, beyond the stop point, mappings
    // with the previous memory table's host addresses (found by FuzzSync,
    // fixed): regressions/FuzzSync/walk-budget-keeps-mapping-into-old-ram
    // (a PDPT whose first three entries point back at it exhausts a
    // 4096-entry budget before PML4 entry 255; a page-selective invalidation
    // maps IOVA 0x7f8000000000; a new memory table is synced and cut again)
    // and walk-budget-old-ram-found-by-fuzzer, replayed above.
}
