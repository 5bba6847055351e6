import Bridge
import Metrics
import VTd

/// The daemon's metrics, through swift-metrics. The executable bootstraps the
/// backend (a Prometheus registry); the library only records.
struct DaemonMetrics {
    let maps = Counter(label: "vtdbridge_maps_total")
    let unmaps = Counter(label: "vtdbridge_unmaps_total")
    let kernelFailures = Counter(label: "vtdbridge_kernel_failures_total")
    let faults = Counter(label: "vtdbridge_faults_total")
    let invalidations = Counter(label: "vtdbridge_invalidation_descriptors_total")
    let notifierEntries = Counter(label: "vtdbridge_notifier_entries_total")
    let rejectedFrames = Counter(label: "vtdbridge_rejected_requests_total")
    let vmmConnections = Counter(label: "vtdbridge_vmm_connections_total")
    let batchDuration = Timer(label: "vtdbridge_batch_duration_seconds")
    let attachedDevices = Gauge(label: "vtdbridge_attached_devices")
    let guestRAMRegionsLost = Counter(label: "vtdbridge_guest_ram_regions_lost_total")
    let vfioUserConnections = Counter(label: "vtdbridge_vfio_user_connections_total")
    let vfioUserMessages = Counter(label: "vtdbridge_vfio_user_messages_total")
    let vfioUserRefused = Counter(label: "vtdbridge_vfio_user_refused_total")
    let vfioUserStraddledUnmaps = Counter(label: "vtdbridge_vfio_user_straddled_unmaps_total")

    func record(_ report: SyncReport) {
        if report.maps > 0 { maps.increment(by: report.maps) }
        if report.unmaps > 0 { unmaps.increment(by: report.unmaps) }
        if !report.failures.isEmpty { kernelFailures.increment(by: report.failures.count) }
        if report.faults > 0 { faults.increment(by: report.faults) }
        if !report.lostRegions.isEmpty { guestRAMRegionsLost.increment(by: report.lostRegions.count) }
    }

    /// Per-device gauges, refreshed after every change.
    func recordDevice(_ space: AddressSpace) {
        let dims = [("device", space.sourceID.description)]
        Gauge(label: "vtdbridge_device_mappings", dimensions: dims).record(space.shadow.count)
        Gauge(label: "vtdbridge_device_mapped_bytes", dimensions: dims).record(Int64(clamping: space.shadow.mappedBytes))
    }
}
