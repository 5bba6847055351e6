import Bridge
import Foundation
import Glibc
import Posix
import VTd
import VTdBridgeClient
import VTdGuest
import Wire
import XCTest

/// The metrics as a scraper reads them, from a real vtdbridged process (its
/// executable bootstraps the Prometheus registry): HELP on every family,
/// µs buckets, faults by reason, the instance label, device series gone
/// after a detach, and the node_exporter textfile.
final class MetricsTests: XCTestCase {
    private func metricsText(_ daemon: DaemonHarness) throws -> String {
        try XCTUnwrap(daemon.control().require("metrics")["text"]?.stringValue)
    }

    private func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    func testMetricsTextHasHelpBucketsFaultReasonsAndTheInstance() throws {
        let daemon = try DaemonHarness(name: "vm7", devices: ["0000:01:00.0=00:03.0", "0000:02:00.0=00:04.0"])
        let (client, writer, _) = try daemon.connectGuest(SourceID("00:03.0")!)
        // A leaf whose frame is outside the guest's 64 MiB of RAM: a
        // leaf-outside-ram fault, counted and not mapped.
        var w = writer
        let batch = try w.map(domain: 1, iova: 0x2000, gpa: 0x4000_0000) + [GuestTableWriter<GuestRAM>.wait]
        XCTAssertEqual(try client.request(.invalidate(batch.map { InvalidationWords(low: $0.encoded.low, high: $0.encoded.high) })).status, .ok)
        client.close()

        let text = try metricsText(daemon)
        let all = lines(text)
        // Every family has its HELP line, right before its TYPE line.
        let types = all.filter { $0.hasPrefix("# TYPE ") }
        XCTAssertGreaterThanOrEqual(types.count, 17, text)
        for type in types {
            let name = type.split(separator: " ")[2]
            let index = try XCTUnwrap(all.firstIndex(of: type))
            XCTAssertTrue(index > 0 && all[index - 1].hasPrefix("# HELP \(name) ") && all[index - 1].count > "# HELP \(name) ".count + 10,
                          "no HELP text for \(name):\n\(text)")
        }
        XCTAssertTrue(all.contains("# HELP vtdbridge_maps_total VFIO_IOMMU_MAP_DMA calls that succeeded."), text)
        XCTAssertTrue(all.contains("# TYPE vtdbridge_maps_total counter"), text)
        XCTAssertTrue(all.contains(#"vtdbridge_maps_total{instance="vm7"} 1"#), text)
        XCTAssertTrue(all.contains(#"vtdbridge_attached_devices{instance="vm7"} 2.0"#), text)

        // Every series carries the instance.
        let series = all.filter { !$0.hasPrefix("#") }
        XCTAssertFalse(series.isEmpty)
        for line in series { XCTAssertTrue(line.contains(#"{instance="vm7""#), line) }

        // Faults by reason, each reason present from the start.
        XCTAssertTrue(all.contains(#"vtdbridge_faults_total{instance="vm7",reason="leaf-outside-ram"} 1"#), text)
        XCTAssertTrue(all.contains(#"vtdbridge_faults_total{instance="vm7",reason="entry-reserved"} 0"#), text)
        XCTAssertEqual(all.filter { $0.hasPrefix("vtdbridge_faults_total{") }.count, FaultReason.allCases.count, text)

        // The batch histogram's buckets run from 5 µs to 100 ms (swift-
        // prometheus writes gauges as doubles, bounds in plain decimals); the two
        // batches (map, fault) took well under 100 ms.
        let buckets = all.filter { $0.hasPrefix("vtdbridge_batch_duration_seconds_bucket{") }
        XCTAssertEqual(buckets.count, 15, text)  // 14 bounds and +Inf
        XCTAssertTrue(buckets.first?.hasPrefix(#"vtdbridge_batch_duration_seconds_bucket{instance="vm7",le="0.000005"}"#) ?? false, text)
        XCTAssertTrue(buckets.contains { $0.hasPrefix(#"vtdbridge_batch_duration_seconds_bucket{instance="vm7",le="0.000025"}"#) }, text)
        XCTAssertTrue(buckets.contains(#"vtdbridge_batch_duration_seconds_bucket{instance="vm7",le="0.1"} 2"#), text)
        XCTAssertTrue(all.contains(#"vtdbridge_batch_duration_seconds_count{instance="vm7"} 2"#), text)

        // Per-device series: both devices, then only the one still attached.
        XCTAssertTrue(all.contains(#"vtdbridge_device_mappings{instance="vm7",device="00:03.0"} 1.0"#), text)
        XCTAssertTrue(all.contains(#"vtdbridge_device_mapped_bytes{instance="vm7",device="00:03.0"} 4096.0"#), text)
        XCTAssertTrue(all.contains(#"vtdbridge_device_mappings{instance="vm7",device="00:04.0"} 0.0"#), text)
        let detach = try runTool("vtdbridgectl", ["detach", "00:04.0", "--socket", daemon.controlSocket])
        XCTAssertEqual(detach.status, 0, detach.stderr)
        let after = try metricsText(daemon)
        XCTAssertFalse(after.contains(#"device="00:04.0""#), after)
        XCTAssertTrue(lines(after).contains(#"vtdbridge_device_mappings{instance="vm7",device="00:03.0"} 1.0"#), after)
        XCTAssertTrue(lines(after).contains(#"vtdbridge_attached_devices{instance="vm7"} 1.0"#), after)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }

    /// metrics.textfile: written right after start and then once per
    /// interval, each time as a new file renamed over the old one (a
    /// reader never sees a part), mode 0644, and once more at the stop.
    func testTextfileIsReplacedAtTheIntervalAndWrittenAtTheStop() throws {
        let directory = NSTemporaryDirectory() + "vtdbridged-textfile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let path = directory + "/collector/vtdbridged-test.prom"
        try FileManager.default.createDirectory(atPath: directory + "/collector", withIntermediateDirectories: true)
        let daemon = try DaemonHarness(environment: [
            "VTDBRIDGE_METRICS_TEXTFILE": path, "VTDBRIDGE_METRICS_INTERVAL": "1",
        ], directory: directory)
        _ = try daemon.connectGuest(SourceID("00:03.0")!)

        // Read it as fast as possible for 3.5 s: every read is a whole file,
        // and the inodes seen count the writes.
        var inodes: [UInt64] = []
        var reads = 0
        let end = Date().addingTimeInterval(3.5)
        while Date() < end {
            var st = stat()
            if stat(path, &st) == 0, inodes.last != UInt64(st.st_ino) { inodes.append(UInt64(st.st_ino)) }
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                reads += 1
                XCTAssertTrue(text.hasSuffix("\n") && text.contains("# HELP vtdbridge_maps_total ")
                              && text.contains(#"vtdbridge_attached_devices{instance="test"} 1.0\#n"#), "a partial file was read:\n\(text)")
            }
            usleep(2_000)
        }
        XCTAssertGreaterThan(reads, 100)
        // Written at start and every second after: 3 or 4 files in 3.5 s
        // (one more or less if the reads started late or the loop was slow).
        XCTAssertTrue((3...5).contains(inodes.count), "\(inodes.count) writes seen in 3.5 s at a 1 s interval")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"))
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644, "node_exporter runs as another user")
        let serving = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(serving.contains(#"vtdbridge_maps_total{instance="test"} 1\#n"#), serving)
        XCTAssertTrue(serving.contains(#"vtdbridge_device_mappings{instance="test",device="00:03.0"} 1.0"#), serving)

        // The stop writes the last values: the unmap it did, no device left.
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
        let last = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(last.contains(#"vtdbridge_unmaps_total{instance="test"} 1\#n"#), last)
        XCTAssertTrue(last.contains(#"vtdbridge_attached_devices{instance="test"} 0.0\#n"#), last)
        XCTAssertFalse(last.contains("vtdbridge_device_mappings{"), last)
    }

    /// A directory the daemon cannot write (the unit's sandbox without
    /// ReadWritePaths=) costs one error line, not the service.
    func testAnUnwritableTextfileIsLoggedOnceAndTheDaemonServes() throws {
        let daemon = try DaemonHarness(environment: [
            "VTDBRIDGE_METRICS_TEXTFILE": "/proc/vtdbridged-no-such-dir/x.prom", "VTDBRIDGE_METRICS_INTERVAL": "1",
        ])
        usleep(2_300_000)
        XCTAssertNoThrow(try daemon.control().require("status"))
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
        let log = daemon.log
        XCTAssertEqual(log.components(separatedBy: "metrics textfile not written").count - 1, 1, log)
        XCTAssertTrue(log.contains("/proc/vtdbridged-no-such-dir/x.prom.tmp"), log)
    }
}
