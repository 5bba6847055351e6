/// Where the bridge learns what the guest mapped: the one switch between the
/// front-ends that feed it. HELLO picks it for a session (PROTOCOL.md §1.6).
public enum TranslationSource: String, Sendable, Equatable, CaseIterable {
    /// The guest's own second-level tables in shared RAM, walked on each
    /// invalidation descriptor the VMM forwards (caching mode, spec 6.1).
    case tables
    /// MAP/UNMAP events from a VMM that walks the tables itself, as QEMU's
    /// IOMMU notifiers report them (IOMMUTLBEntry).
    case notifier

    /// Whether the bridge keeps the notified mappings (`NotifiedMap`) rather
    /// than reading tables.
    var keepsNotifiedMappings: Bool {
        switch self {
        case .tables: false
        case .notifier: true
        }
    }
}
