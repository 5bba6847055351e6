import CVFIO
import Glibc
import Posix

/// Interrupts of a device: what each index offers, and wiring them to
/// eventfds, so that the kernel signals the VMM's eventfd directly and no
/// interrupt passes through the daemon.
extension Device {
    /// VFIO_DEVICE_GET_IRQ_INFO for `index`.
    public func irqInfo(_ index: UInt32) throws(VFIOError) -> IRQInfo {
        var info = vfio_irq_info()
        info.argsz = UInt32(cvfio_sizeof_vfio_irq_info)
        info.index = index
        let kernel = kernel
        try fd.vfio("VFIO_DEVICE_GET_IRQ_INFO", detail: "index \(index)", hint: {
            $0 == EINVAL ? "the device has no interrupt index \(index)" : nil
        }) {
            kernel.ioctl($0, cvfio_VFIO_DEVICE_GET_IRQ_INFO, &info)
        }
        return IRQInfo(index: index, flags: info.flags, count: info.count)
    }

    /// The data of one VFIO_DEVICE_SET_IRQS.
    public enum IRQData: Sendable {
        /// VFIO_IRQ_SET_DATA_NONE.
        case none
        /// VFIO_IRQ_SET_DATA_BOOL: one byte per sub-index.
        case bools([UInt8])
        /// VFIO_IRQ_SET_DATA_EVENTFD: one descriptor per sub-index (-1 tears
        /// that one down). Borrowed: the kernel takes its own reference, so
        /// the caller may close them once this returns.
        case eventfds([Int32])
    }

    /// VFIO_DEVICE_SET_IRQS. `action` is the VFIO_IRQ_SET_ACTION_* bits;
    /// the data type bit comes from `data`.
    public func setIRQs(index: UInt32, start: UInt32, count: UInt32, action: UInt32, data: IRQData) throws(VFIOError) {
        let header = Int(cvfio_sizeof_vfio_irq_set)
        var payload: [UInt8] = []
        let dataType: UInt32
        switch data {
        case .none:
            dataType = UInt32(VFIO_IRQ_SET_DATA_NONE)
        case let .bools(values):
            dataType = UInt32(VFIO_IRQ_SET_DATA_BOOL)
            payload = values
        case let .eventfds(fds):
            dataType = UInt32(VFIO_IRQ_SET_DATA_EVENTFD)
            for fd in fds { withUnsafeBytes(of: fd) { payload.append(contentsOf: $0) } }
        }
        var bytes = [UInt8](repeating: 0, count: header + payload.count)
        bytes.replaceSubrange(header..<bytes.count, with: payload)
        let kernel = kernel
        try bytes.withUnsafeMutableBytes { buffer in Result { () throws(VFIOError) -> Void in
            buffer.storeBytes(of: UInt32(buffer.count), toByteOffset: 0, as: UInt32.self)
            buffer.storeBytes(of: dataType | action, toByteOffset: 4, as: UInt32.self)
            buffer.storeBytes(of: index, toByteOffset: 8, as: UInt32.self)
            buffer.storeBytes(of: start, toByteOffset: 12, as: UInt32.self)
            buffer.storeBytes(of: count, toByteOffset: 16, as: UInt32.self)
            try fd.vfio("VFIO_DEVICE_SET_IRQS", detail: "index \(index), start \(start), count \(count), flags 0x\(String(dataType | action, radix: 16))") {
                kernel.ioctl($0, cvfio_VFIO_DEVICE_SET_IRQS, buffer.baseAddress!)
            }
        } }.get()
    }
}
