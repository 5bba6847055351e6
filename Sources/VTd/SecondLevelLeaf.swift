/// One translation found by the second-level walk: [iova, iova + size) maps to
/// guest-physical [gpa, gpa + size) with the combined R/W of every level.
public struct SecondLevelLeaf: Sendable, Equatable {
    public var iova: UInt64
    public var gpa: UInt64
    /// log2 of the size: 12, 21 or 30.
    public var sizeShift: UInt8
    public var read: Bool
    public var write: Bool

    @inlinable
    public init(iova: UInt64, gpa: UInt64, sizeShift: UInt8, read: Bool, write: Bool) {
        self.iova = iova
        self.gpa = gpa
        self.sizeShift = sizeShift
        self.read = read
        self.write = write
    }

    @inlinable public var size: UInt64 { 1 << UInt64(sizeShift) }
}
