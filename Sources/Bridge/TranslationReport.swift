import JSON
import VTd

/// The translation of one device as the daemon establishes it: the shadow's
/// mappings and the faults met. `vtdbridgectl walk` prints it, and the
/// daemon's `mappings` command answers with the same JSON; vtdbridgectl
/// renders both as text from that JSON (one table for the two).
public struct TranslationReport: Sendable, Equatable {
    public var device: SourceID
    public var domain: UInt16?
    public var levels: Int?
    /// "translated", "pass-through", "not-present" or "invalid" for a
    /// device whose tables the daemon walks; "notifier" when a VMM in
    /// notifier mode sends its mappings; "vfio-user" when its client does.
    public var mode: String
    public var mappings: [Mapping]
    public var faults: [TranslationFault]

    /// One mapping the kernel holds, with the guest-physical address it
    /// stands for under the current memory table (nil when its host address
    /// lies in no current region: the memory table changed and the next
    /// sync will move it).
    public struct Mapping: Sendable, Equatable {
        public var iova: UInt64
        public var gpa: UInt64?
        public var size: UInt64
        public var permission: DMAPermission
    }

    /// `memory` is the guest RAM the space's host addresses came from; the
    /// shadow keeps only host addresses (what MAP_DMA was given).
    public init(space: AddressSpace, memory: GuestRAM?) {
        device = space.sourceID
        switch space.context {
        case let .translated(did, _, levels):
            domain = did
            self.levels = levels
            mode = "translated"
        case let .passThrough(did):
            domain = did
            mode = "pass-through"
        case .notPresent:
            mode = "not-present"
        case .invalid:
            mode = "invalid"
        }
        // A vfio-user client's device: its client walks the tables, and the
        // daemon knows host addresses in the files it sent, not GPAs.
        if space.isClientFed {
            mode = "vfio-user"
        } else if space.notified != nil {
            // Notifier mode: the VMM walks the tables, so the daemon reads
            // no context entry and knows no domain or depth. The context a
            // table-mode session left behind would be stale, not the truth.
            mode = "notifier"
            domain = nil
            levels = nil
        }
        mappings = space.shadow.entries.map { e in
            Mapping(iova: e.iova, gpa: memory?.gpa(hostAddress: e.hostAddress, size: e.size), size: e.size, permission: e.permission)
        }
        faults = space.faults.recent
    }

    /// The report as one JSON object, addresses as "0x…" strings:
    /// {"device","domain","faults":[…],"levels","mappings":[{"gpa","iova","read","size","write"}],"mode"}.
    /// `vtdbridgectl walk --json` prints it and the daemon's `mappings`
    /// command returns it (PROTOCOL.md §2.3); both serialize it with the one
    /// serializer, so the two are byte for byte the same for the same shadow.
    public var json: JSONValue {
        .object([
            "device": .string(device.description),
            "domain": domain.map { .int(Int64($0)) } ?? .null,
            "levels": levels.map { .int(Int64($0)) } ?? .null,
            "mode": .string(mode),
            "mappings": .array(mappings.map { m in
                .object([
                    "iova": .address(m.iova), "gpa": m.gpa.map(JSONValue.address) ?? .null, "size": .address(m.size),
                    "read": .bool(m.permission.contains(.read)), "write": .bool(m.permission.contains(.write)),
                ])
            }),
            "faults": .array(faults.map { f in
                .object([
                    "reason": .string(f.reason.rawValue), "iova": f.iova.map(JSONValue.address) ?? .null,
                    "level": f.level.map { .int(Int64($0)) } ?? .null, "value": .address(f.value), "detail": .string(f.detail),
                ])
            }),
        ])
    }
}
