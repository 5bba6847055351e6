import VTd

/// One leaf the guest's tables hold, as the guest meant it.
struct GuestMapping: Equatable, CustomStringConvertible {
    var iova: UInt64
    var gpa: UInt64
    var size: UInt64
    var permission: DMAPermission

    var description: String { "\(hex(iova))→\(hex(gpa))/\(hex(size))/\(permission)" }
}

/// What the qtest guest has set up for its device at a point of a scenario,
/// for checks that look from outside the guest (the daemon's mappings).
/// With translation off the device reaches all guest RAM untranslated, and
/// `mappings` is what the tables would give once it is back on.
struct QEMUGuestView {
    var device: SourceID
    var translationEnabled: Bool
    var mappings: [GuestMapping]
    var ramSize: UInt64
}
