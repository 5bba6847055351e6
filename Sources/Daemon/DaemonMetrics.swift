import Bridge
import CoreMetrics
import VTd

/// The daemon's metrics, through swift-metrics. The executable bootstraps the
/// backend (a Prometheus registry, given each family's HELP text and buckets
/// from `families`); the library only records.
///
/// Every series carries `instance="<config name>"`, so that the files of
/// several daemons on one host (the textfile collector reads them all) stay
/// apart.
struct DaemonMetrics {
    let instance: String
    let maps: Counter
    let unmaps: Counter
    let kernelFailures: Counter
    let invalidations: Counter
    let notifierEntries: Counter
    let rejectedFrames: Counter
    let vmmConnections: Counter
    let batchDuration: Timer
    let attachedDevices: Gauge
    let guestRAMRegionsLost: Counter
    let vfioUserConnections: Counter
    let vfioUserMessages: Counter
    let vfioUserRefused: Counter
    let vfioUserStraddledUnmaps: Counter
    /// One counter per fault reason, all created at start so that each
    /// reason reads 0 before its first fault (a rate over a series that
    /// appears only at its first increment misses that increment).
    let faults: [FaultReason: Counter]

    init(instance: String) {
        self.instance = instance
        let dims = [("instance", instance)]
        maps = Counter(label: "vtdbridge_maps_total", dimensions: dims)
        unmaps = Counter(label: "vtdbridge_unmaps_total", dimensions: dims)
        kernelFailures = Counter(label: "vtdbridge_kernel_failures_total", dimensions: dims)
        invalidations = Counter(label: "vtdbridge_invalidation_descriptors_total", dimensions: dims)
        notifierEntries = Counter(label: "vtdbridge_notifier_entries_total", dimensions: dims)
        rejectedFrames = Counter(label: "vtdbridge_rejected_requests_total", dimensions: dims)
        vmmConnections = Counter(label: "vtdbridge_vmm_connections_total", dimensions: dims)
        batchDuration = Timer(label: "vtdbridge_batch_duration_seconds", dimensions: dims)
        attachedDevices = Gauge(label: "vtdbridge_attached_devices", dimensions: dims)
        guestRAMRegionsLost = Counter(label: "vtdbridge_guest_ram_regions_lost_total", dimensions: dims)
        vfioUserConnections = Counter(label: "vtdbridge_vfio_user_connections_total", dimensions: dims)
        vfioUserMessages = Counter(label: "vtdbridge_vfio_user_messages_total", dimensions: dims)
        vfioUserRefused = Counter(label: "vtdbridge_vfio_user_refused_total", dimensions: dims)
        vfioUserStraddledUnmaps = Counter(label: "vtdbridge_vfio_user_straddled_unmaps_total", dimensions: dims)
        var faults: [FaultReason: Counter] = [:]
        for reason in FaultReason.allCases {
            faults[reason] = Counter(label: "vtdbridge_faults_total", dimensions: [("instance", instance), ("reason", reason.rawValue)])
        }
        self.faults = faults
        attachedDevices.record(0)
    }

    func record(_ report: SyncReport) {
        if report.maps > 0 { maps.increment(by: report.maps) }
        if report.unmaps > 0 { unmaps.increment(by: report.unmaps) }
        if !report.failures.isEmpty { kernelFailures.increment(by: report.failures.count) }
        for (reason, count) in report.faultReasons where count > 0 { faults[reason]?.increment(by: count) }
        if !report.lostRegions.isEmpty { guestRAMRegionsLost.increment(by: report.lostRegions.count) }
    }

    private func deviceDimensions(_ sourceID: SourceID) -> [(String, String)] {
        [("instance", instance), ("device", sourceID.description)]
    }

    /// Per-device gauges, refreshed before every emission.
    func recordDevice(_ space: AddressSpace) {
        let dims = deviceDimensions(space.sourceID)
        Gauge(label: "vtdbridge_device_mappings", dimensions: dims).record(space.shadow.count)
        Gauge(label: "vtdbridge_device_mapped_bytes", dimensions: dims).record(Int64(clamping: space.shadow.mappedBytes))
    }

    /// A detached device's series leave the registry: a gauge left behind
    /// would go on reporting the last mapping count of a device that no
    /// longer exists, and a device attached under the next guest address
    /// would add a series per attach without bound.
    func forgetDevice(_ sourceID: SourceID) {
        let dims = deviceDimensions(sourceID)
        Gauge(label: "vtdbridge_device_mappings", dimensions: dims).destroy()
        Gauge(label: "vtdbridge_device_mapped_bytes", dimensions: dims).destroy()
    }
}

/// What the exporter needs to know of each family that swift-metrics cannot
/// say: its HELP line, and a histogram's buckets.
public enum DaemonMetricFamilies {
    /// HELP text of every family the daemon records, by name.
    public static let help: [String: String] = [
        "vtdbridge_maps_total": "VFIO_IOMMU_MAP_DMA calls that succeeded.",
        "vtdbridge_unmaps_total": "VFIO_IOMMU_UNMAP_DMA calls that succeeded (an unmap-all counts as one).",
        "vtdbridge_kernel_failures_total": "MAP_DMA or UNMAP_DMA calls the kernel refused (the status command lists them).",
        "vtdbridge_faults_total": "Guest translations not mirrored, by VT-d fault reason (spec 7.1.3) or the bridge's own refusal.",
        "vtdbridge_invalidation_descriptors_total": "Invalidation descriptors received from the VMM (INVALIDATE requests).",
        "vtdbridge_notifier_entries_total": "IOTLB notifier entries received from the VMM (NOTIFY requests).",
        "vtdbridge_rejected_requests_total": "Event-channel requests answered with an error status.",
        "vtdbridge_vmm_connections_total": "VMM connections on the event socket that sent a frame (a liveness probe that closes silently is not counted).",
        "vtdbridge_batch_duration_seconds": "Time to apply one INVALIDATE or NOTIFY batch or one vfio-user DMA request, kernel calls included.",
        "vtdbridge_attached_devices": "Devices attached now.",
        "vtdbridge_guest_ram_regions_lost_total": "Guest RAM regions dropped because their file shrank under the daemon.",
        "vtdbridge_vfio_user_connections_total": "vfio-user clients accepted.",
        "vtdbridge_vfio_user_messages_total": "vfio-user messages received.",
        "vtdbridge_vfio_user_refused_total": "vfio-user messages answered with an error.",
        "vtdbridge_vfio_user_straddled_unmaps_total": "Regions cut by a vfio-user DMA_UNMAP edge (unmapped whole, the rest mapped again).",
        "vtdbridge_device_mappings": "Mappings the kernel holds for the device.",
        "vtdbridge_device_mapped_bytes": "Bytes of guest memory mapped for the device.",
    ]

    /// Buckets of each duration histogram. A batch takes ~30 µs natively
    /// (docs/BENCHMARKS.md), and a library default starting at 5 ms would
    /// put every one in the first bucket: these run from 5 µs, in 1-2.5-5
    /// steps, to 100 ms (a large unmap of pinned pages, or a guest under TCG).
    public static let durationBuckets: [String: [Duration]] = [
        "vtdbridge_batch_duration_seconds": [
            .microseconds(5), .microseconds(10), .microseconds(25), .microseconds(50),
            .microseconds(100), .microseconds(250), .microseconds(500),
            .milliseconds(1), .microseconds(2500), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        ],
    ]
}
