/// One translation found by the second-level walk: [iova, iova + size) maps to
/// guest-physical [gpa, gpa + size) with the R/W of every level ANDed.
public struct SecondLevelLeaf: Sendable, Equatable {
    public var iova: UInt64
    public var gpa: UInt64
    /// log2 of the size: 12, 21 or 30.
    public var sizeShift: UInt8
    /// Never empty: a leaf that grants nothing is not present.
    public var permission: DMAPermission

    @inlinable
    public init(iova: UInt64, gpa: UInt64, sizeShift: UInt8, permission: DMAPermission) {
        self.iova = iova
        self.gpa = gpa
        self.sizeShift = sizeShift
        self.permission = permission
    }

    @inlinable public var size: UInt64 { 1 << UInt64(sizeShift) }
}
