/// DEVICE_SET_IRQS's payload (vfio-user.rst, "VFIO_USER_DEVICE_SET_IRQS";
/// Linux's struct vfio_irq_set): argsz (u32, the whole payload), flags (u32),
/// index, start, count (u32 each), then `count` bool bytes when the data type
/// is BOOL. With DATA_EVENTFD the eventfds travel beside the message, not in
/// it. The reply has no payload.
///
/// QEMU 11.1 sends EVENTFD|TRIGGER (0x24) with one eventfd for INTx, and
/// NONE|UNMASK (0x11) after trapped BAR accesses (observed).
public struct VFIOUserIRQSet: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var start: UInt32
    public var count: UInt32
    /// One byte per sub-index when `flags` has DATA_BOOL; else empty.
    public var boolData: [UInt8]

    /// Bytes before the optional bool data.
    public static let fixedSize = 20
    public static let dataNone: UInt32 = 1 << 0
    public static let dataBool: UInt32 = 1 << 1
    public static let dataEventFD: UInt32 = 1 << 2
    public static let actionMask: UInt32 = 1 << 3
    public static let actionUnmask: UInt32 = 1 << 4
    public static let actionTrigger: UInt32 = 1 << 5
    public static let dataTypes: UInt32 = dataNone | dataBool | dataEventFD
    public static let actions: UInt32 = actionMask | actionUnmask | actionTrigger

    /// A set whose `argsz` is its encoded size, as the spec requires.
    public init(flags: UInt32, index: UInt32, start: UInt32, count: UInt32, boolData: [UInt8] = []) {
        self.init(argsz: UInt32(Self.fixedSize + boolData.count), flags: flags, index: index, start: start, count: count, boolData: boolData)
    }

    public init(argsz: UInt32, flags: UInt32, index: UInt32, start: UInt32, count: UInt32, boolData: [UInt8]) {
        self.argsz = argsz
        self.flags = flags
        self.index = index
        self.start = start
        self.count = count
        self.boolData = boolData
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(index)
        bytes.appendLittleEndian(start)
        bytes.appendLittleEndian(count)
        bytes.append(contentsOf: boolData)
    }

    /// Decodes a payload whose length the caller has checked against argsz
    /// and the flags.
    static func decode(_ r: LittleEndianReader) -> VFIOUserIRQSet {
        VFIOUserIRQSet(argsz: r.u32(0), flags: r.u32(4), index: r.u32(8), start: r.u32(12), count: r.u32(16),
                       boolData: Array(r.slice(fixedSize, r.count - fixedSize)))
    }
}
