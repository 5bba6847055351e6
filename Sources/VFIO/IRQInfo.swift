import CVFIO

/// The reply of VFIO_DEVICE_GET_IRQ_INFO: one interrupt index of a device
/// (vfio-pci: 0 INTx, 1 MSI, 2 MSI-X, 3 error, 4 request).
public struct IRQInfo: Sendable, Equatable {
    public var index: UInt32
    /// Raw vfio_irq_info.flags (EVENTFD, MASKABLE, AUTOMASKED, NORESIZE).
    public var flags: UInt32
    /// How many interrupts the index has (0: the device has none there).
    public var count: UInt32

    public init(index: UInt32, flags: UInt32, count: UInt32) {
        self.index = index
        self.flags = flags
        self.count = count
    }
}
