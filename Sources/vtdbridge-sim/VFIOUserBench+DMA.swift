import Bridge
import Foundation
import Glibc
import Histogram
import Logging
import Posix
import UnixIO
import VFIO
import VTdBridgeClient
import Wire

/// Part 1 of `vfio-user-bench`: what one DMA_MAP (and DMA_UNMAP) costs a
/// vfio-user client through vtdbridged, and its floor from the same run.
extension VFIOUserBench {
    struct DMAFigures {
        var map: LatencyFigure
        var unmap: LatencyFigure
        var roundTrip: LatencyFigure
        var roundTripWithFD: LatencyFigure
        var rawMap: LatencyFigure
        var rawUnmap: LatencyFigure
        /// Each against its per-round floor (round trip + raw call).
        var mapFloor: FloorComparison
        var unmapFloor: FloorComparison
    }

    /// Pages of the memory file cycled through: all touched before the
    /// clock starts, so no timed call pays a page fault, and several, so
    /// that the kernel pins a different page each round.
    static let dmaWindow = 256
    static let dmaIOVABase: UInt64 = 0x1000_0000

    /// Each round times, in turn: DMA_MAP 4K through the daemon (with a
    /// fresh duplicate of the memory file's descriptor, as QEMU sends one
    /// with every DMA_MAP), its DMA_UNMAP, a plain socket round trip to an
    /// echo process and the same round trip carrying a descriptor, and a
    /// raw MAP_DMA and UNMAP_DMA of the same page on a second device's
    /// container. Interleaving them makes every figure see the same VM
    /// weather (TCG on shared cores drifts over seconds).
    func measureDMA(socket: String, rawDevice: String, control: ControlClient) throws -> DMAFigures {
        let window = Self.dmaWindow
        let size = UInt64(window) * 4096
        let memory = try FileDescriptor.memoryFile(name: "vfio-user-bench", size: size)
        let base = try memory.mapShared(length: Int(size), offset: 0, writable: true)
        defer { try? SharedMapping.unmap(base, length: Int(size)) }
        memset(base, 0x5a, Int(size))

        // The floor (FloorProbe): this binary echoing 48-byte requests (a
        // DMA_MAP's size) with 16-byte replies (its reply's), and the same
        // ioctls on a container of the second edu.
        let probe = try FloorProbe(directory: directory, rawDevice: rawDevice, requestSize: 48, replySize: 16)
        defer { probe.stop() }
        let echoTrip = probe.trip
        let echoRequest = VFIOUserCodec.encodeCommand(.dmaMap(VFIOUserDMAMap(flags: 3, offset: 0, iova: Self.dmaIOVABase, size: 4096)), messageID: 1)
        precondition(echoRequest.count == 48, "a DMA_MAP message is 48 bytes")

        let client = TimedRoundTrip(connection: try UnixConnection.connect(path: socket))
        defer { client.connection.close() }
        _ = try client.call(.version(VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities(maxMessageFDs: 16))))
        let mapsBefore = try vfioUserCounter(control, "dma-maps")

        var map = LatencyFigure.histogram(), unmap = LatencyFigure.histogram()
        var trip = LatencyFigure.histogram(), tripFD = LatencyFigure.histogram()
        var rawMap = LatencyFigure.histogram(), rawUnmap = LatencyFigure.histogram()
        var floorMap = FloorSamples(), floorUnmap = FloorSamples()
        func ns(_ d: Duration) -> UInt64 { UInt64(max(0, d.nanosecondCount)) }
        for round in 0..<(warmup + rounds) {
            let timed = round >= warmup
            let slot = UInt64(round % window)
            let iova = Self.dmaIOVABase + slot * 4096
            let offset = slot * 4096

            let fd = try memory.duplicate()
            let mapped = try client.call(.dmaMap(VFIOUserDMAMap(flags: VFIOUserDMAMap.readable | VFIOUserDMAMap.writeable,
                                                                offset: offset, iova: iova, size: 4096)), fds: [fd])
            try fd.close()
            let unmapped = try client.call(.dmaUnmap(VFIOUserDMAUnmap(iova: iova, size: 4096)))

            // Under TCG a round trip costs less when the echo process has
            // only just gone to sleep, so the two kinds take turns going
            // first: neither is always the warm one.
            func carryingFD() throws -> (reply: [UInt8], latency: Duration) {
                let carrier = try memory.duplicate()
                defer { try? carrier.close() }
                return try echoTrip.exchange(echoRequest, fds: [carrier], replySize: 16)
            }
            let plain, withFD: (reply: [UInt8], latency: Duration)
            if round % 2 == 0 {
                plain = try echoTrip.exchange(echoRequest, replySize: 16)
                withFD = try carryingFD()
            } else {
                withFD = try carryingFD()
                plain = try echoTrip.exchange(echoRequest, replySize: 16)
            }

            let host = UInt64(UInt(bitPattern: base)) + offset
            let rawMapped = try probe.map(iova: iova, hostAddress: host)
            let rawUnmapped = try probe.unmap(iova: iova)

            if timed {
                map.record(ns(mapped.latency))
                unmap.record(ns(unmapped.latency))
                trip.record(ns(plain.latency))
                tripFD.record(ns(withFD.latency))
                rawMap.record(ns(rawMapped))
                rawUnmap.record(ns(rawUnmapped))
                // This round's floor for each: the plain round trip plus
                // the same raw call (a DMA_MAP carries an fd, the floor's
                // trip does not: the with-fd figure is shown beside it).
                floorMap.record(roundTrip: plain.latency, ioctl: rawMapped)
                floorUnmap.record(roundTrip: plain.latency, ioctl: rawUnmapped)
            }
        }
        // Every DMA_MAP must have reached the kernel through the daemon.
        let maps = try vfioUserCounter(control, "dma-maps") - mapsBefore
        guard maps == warmup + rounds else {
            throw SimError("the daemon counted \(maps) DMA_MAPs for \(warmup + rounds) sent")
        }
        return DMAFigures(map: LatencyFigure(map), unmap: LatencyFigure(unmap), roundTrip: LatencyFigure(trip),
                          roundTripWithFD: LatencyFigure(tripFD), rawMap: LatencyFigure(rawMap), rawUnmap: LatencyFigure(rawUnmap),
                          mapFloor: floorMap.comparison(with: map, ioctlName: "MAP_DMA"),
                          unmapFloor: floorUnmap.comparison(with: unmap, ioctlName: "UNMAP_DMA"))
    }

    /// The one device's `vfio-user` counter `name` in the daemon's status.
    func vfioUserCounter(_ control: ControlClient, _ name: String) throws -> Int {
        let devices = try control.require("status")["devices"]?.arrayValue ?? []
        guard let value = devices.first?["vfio-user"]?[name]?.intValue else {
            throw SimError("the daemon's status has no vfio-user counter \(name)")
        }
        return value
    }
}
