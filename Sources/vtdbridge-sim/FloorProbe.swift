import Foundation
import Glibc
import Histogram
import Logging
import UnixIO
import VFIO

/// The same-run floor of issue 14: what any request to another process that
/// makes one DMA mapping must cost on this machine. It has two parts, each
/// as cheap as it can be:
///
/// - a round trip over a Unix socket to a second process that does nothing
///   but answer (`vtdbridge-sim socket-echo`), with the request and reply
///   sizes of the message being compared (an INVALIDATE frame and its ack,
///   a vfio-user DMA_MAP and its reply);
/// - one raw VFIO_IOMMU_MAP_DMA (or UNMAP_DMA) of one 4 KiB page on a type1
///   container of its own, on a second device, with no daemon.
///
/// A benchmark calls it once per timed request, right after that request,
/// so that the floor sees the same VM weather (under TCG on shared cores
/// the speed drifts over seconds); the sum of one round's two parts is one
/// sample of the floor, and percentiles are taken of those sums (the p99 of
/// a sum is not the sum of the p99s).
final class FloorProbe {
    let echo: ChildProcess
    let trip: TimedRoundTrip
    let container: Container
    private let group: Group
    private let listener: UnixListener
    let requestSize: Int
    let replySize: Int

    /// Starts the echo child (its socket and log in `directory`) and opens
    /// the raw container on `rawDevice` (a PCI address bound to vfio-pci).
    init(directory: String, rawDevice: String, requestSize: Int, replySize: Int) throws {
        precondition(replySize > 0 && replySize <= requestSize, "socket-echo answers with a prefix of the request")
        self.requestSize = requestSize
        self.replySize = replySize
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw SimError("creating \(directory): \(String(cString: strerror(errno)))")
        }
        let echoPath = directory + "/echo-\(requestSize)-\(replySize).sock"
        unlink(echoPath)
        listener = try UnixListener.listen(path: echoPath, mode: 0o600)
        do {
            echo = try ChildProcess([ChildProcess.selfExecutable, "socket-echo", "--socket", echoPath,
                                     "--request-size", String(requestSize), "--reply-size", String(replySize)],
                                    logPath: directory + "/echo-\(requestSize)-\(replySize).log")
            trip = TimedRoundTrip(connection: try Self.acceptOne(listener, from: echo))
        } catch {
            listener.close()
            throw error
        }
        var quiet = Logger(label: "floor")
        quiet.logLevel = .critical
        do {
            group = try Group.open(pciAddress: rawDevice, logger: quiet)
            container = try Container.open(logger: quiet)
            try container.attach(group)
        } catch {
            trip.connection.close()
            echo.stop()
            listener.close()
            throw error
        }
    }

    /// One echo round trip of `request` (which must be `requestSize` bytes).
    func roundTrip(_ request: [UInt8]) throws -> Duration {
        precondition(request.count == requestSize)
        return try trip.exchange(request, replySize: replySize).latency
    }

    /// One raw MAP_DMA of the 4 KiB page at `hostAddress` to `iova`, timed.
    func map(iova: UInt64, hostAddress: UInt64) throws -> Duration {
        let start = ContinuousClock.now
        try container.map(iova: iova, size: 4096, hostAddress: hostAddress, permission: .readWrite)
        return start.duration(to: .now)
    }

    /// One raw UNMAP_DMA of the 4 KiB page at `iova`, timed.
    func unmap(iova: UInt64) throws -> Duration {
        let start = ContinuousClock.now
        try container.unmap(iova: iova, size: 4096)
        return start.duration(to: .now)
    }

    /// One floor sample: an echo round trip, then the map (or, with
    /// `hostAddress` nil, the unmap) of one page. Returns both parts.
    func sample(_ request: [UInt8], iova: UInt64, hostAddress: UInt64?) throws -> (roundTrip: Duration, ioctl: Duration) {
        let roundTrip = try roundTrip(request)
        let ioctl = if let hostAddress { try map(iova: iova, hostAddress: hostAddress) } else { try unmap(iova: iova) }
        return (roundTrip, ioctl)
    }

    /// The echo child's pid, for its context-switch counts.
    var echoPID: pid_t { echo.pid }

    func stop() {
        trip.connection.close()
        echo.stop()
        // Closing the container drops whatever the last run left mapped.
        try? container.close()
        try? group.close()
        listener.close()
    }

    /// The child's connection to `listener`, waiting up to 30 s.
    static func acceptOne(_ listener: UnixListener, from child: ChildProcess) throws -> UnixConnection {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            var entry = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, 100)
            if let connection = try listener.accept(nonBlocking: false) { return connection }
            guard child.isRunning else { throw SimError("\(child.arguments.joined(separator: " ")) ended before connecting:\n\(child.log)") }
            guard ContinuousClock.now < deadline else { throw SimError("\(child.arguments[1]) did not connect to \(listener.path) within 30 s") }
        }
    }
}

/// The issue-14 goals for one request kind against its per-round floor:
/// p50 ≤ 1.5 × the floor's p50 and p99 ≤ 3 × the floor's p99. Both sides are
/// histograms of the same rounds, so each percentile is of the samples, not
/// a sum of percentiles.
struct FloorComparison {
    var daemon: LatencyFigure
    var floor: LatencyFigure
    /// The floor's two parts, for the reference column.
    var roundTrip: LatencyFigure
    var ioctl: LatencyFigure
    var ioctlName: String

    static let p50Limit = 1.5
    static let p99Limit = 3.0

    var p50Ratio: Double { Double(daemon.p50) / Double(max(floor.p50, 1)) }
    var p99Ratio: Double { Double(daemon.p99) / Double(max(floor.p99, 1)) }

    /// "met (…)" or "MISSED (…)" for each goal, computed from the figures.
    var goal: String {
        func verdict(_ ok: Bool, _ text: String) -> String { (ok ? "met" : "MISSED") + " (\(text))" }
        return verdict(p50Ratio <= Self.p50Limit, "p50 ≤ 1.5× floor p50") + "; "
            + verdict(p99Ratio <= Self.p99Limit, "p99 ≤ 3× floor p99")
    }

    /// The floor's figures and the two ratios.
    var reference: String {
        let us = LatencyFigure.us
        return "floor (socket round trip + raw \(ioctlName), summed per round) p50 \(us(floor.p50)) µs, p99 \(us(floor.p99)) µs"
            + " (round trip p50 \(us(roundTrip.p50)), \(ioctlName) p50 \(us(ioctl.p50)));"
            + String(format: " daemon / floor: p50 %.2f×, p99 %.2f×", p50Ratio, p99Ratio)
    }
}

/// A floor's samples as a benchmark collects them, one per timed request.
struct FloorSamples {
    /// Round trip + ioctl of each round: the floor.
    var floor = LatencyFigure.histogram()
    var roundTrip = LatencyFigure.histogram()
    var ioctl = LatencyFigure.histogram()
    private(set) var count = 0
    private(set) var totalNanoseconds: UInt64 = 0

    mutating func record(roundTrip trip: Duration, ioctl call: Duration) {
        let a = UInt64(max(0, trip.nanosecondCount)), b = UInt64(max(0, call.nanosecondCount))
        floor.record(a + b)
        roundTrip.record(a)
        ioctl.record(b)
        count += 1
        totalNanoseconds += a + b
    }

    /// The mean floor, in nanoseconds: 1 / this is the rate the floor allows.
    var meanNanoseconds: Double { count == 0 ? .nan : Double(totalNanoseconds) / Double(count) }

    func comparison(with daemon: Histogram<UInt64>, ioctlName: String) -> FloorComparison {
        FloorComparison(daemon: LatencyFigure(daemon), floor: LatencyFigure(floor), roundTrip: LatencyFigure(roundTrip),
                        ioctl: LatencyFigure(ioctl), ioctlName: ioctlName)
    }
}
