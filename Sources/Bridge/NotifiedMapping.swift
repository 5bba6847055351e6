import VTd

/// One mapping a notifier-mode VMM sent (MAP notifications, PROTOCOL.md):
/// the guest-physical address is kept, and the host address is resolved at
/// each sync, so a new memory table moves it.
public typealias NotifiedMap = IOVAOrderedMap<NotifiedMapping>

public struct NotifiedMapping: IOVAOrderedEntry {
    public var iova: UInt64
    public var size: UInt64
    public var gpa: UInt64
    public var permission: DMAPermission

    public init(iova: UInt64, size: UInt64, gpa: UInt64, permission: DMAPermission) {
        self.iova = iova
        self.size = size
        self.gpa = gpa
        self.permission = permission
    }

    public var end: UInt64 {
        let (e, o) = iova.addingReportingOverflow(size)
        return o ? UInt64.max : e
    }
}
