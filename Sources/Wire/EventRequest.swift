/// A decoded event-channel request (PROTOCOL.md §1.6). Values of this type
/// have passed every layout check of `EventCodec.decodeRequest`; what is left
/// to check needs session state (§1.5) or the guest's memory.
public enum EventRequest: Sendable, Equatable {
    /// `flags` holds `HelloFlags`; `cap`/`ecap` are the guest's CAP_REG and ECAP_REG.
    case hello(version: UInt32, flags: UInt32, cap: UInt64, ecap: UInt64)
    /// One region per file descriptor, in descriptor order.
    case setMemTable([MemoryRegionDescriptor])
    /// The guest's RTADDR_REG; 0 means no root table.
    case setRootTable(UInt64)
    /// GCMD.TE as the guest last wrote it.
    case setTranslation(Bool)
    case reset
    case ready
    case invalidate([InvalidationWords])
    case notify([NotifierEntry])
    case ping

    public var type: EventType {
        switch self {
        case .hello: .hello
        case .setMemTable: .setMemTable
        case .setRootTable: .setRootTable
        case .setTranslation: .setTranslation
        case .reset: .reset
        case .ready: .ready
        case .invalidate: .invalidate
        case .notify: .notify
        case .ping: .ping
        }
    }

    /// How many file descriptors must accompany this request (§1.3).
    public var expectedFDCount: Int {
        if case .setMemTable(let regions) = self { return regions.count }
        return 0
    }
}
