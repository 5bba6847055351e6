import Glibc

/// The VM kernel's log, read from /dev/kmsg from the soak's start on: the
/// intel-iommu driver logs each DMA fault it handles ("DMAR: [DMA Write
/// NO_PASID] Request device [00:03.0] fault addr 0x4012000 …"), rate-limited
/// to 10 per 5 s, so a missing line proves nothing but a present one does.
final class KernelLog {
    private let fd: Int32
    /// "DMAR: DRHD: handling fault status reg N" lines read so far: the
    /// driver prints one per fault interrupt, before the records it finds.
    private(set) var faultInterrupts = 0
    init() {
        fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd >= 0 { lseek(fd, 0, SEEK_END) }
    }
    deinit { if fd >= 0 { close(fd) } }

    struct Fault: Hashable {
        var device: String
        var page: UInt64
        var write: Bool
    }

    /// DMA faults logged since the last call.
    func faults() -> [Fault] {
        guard fd >= 0 else { return [] }
        var out: [Fault] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EPIPE || errno == EINTR { continue }  // overwritten records; go on
                break
            }
            if n == 0 { break }
            let line = String(decoding: buffer[0..<n], as: UTF8.self)
            if line.contains("DMAR: DRHD: handling fault status reg") { faultInterrupts += 1 }
            guard line.contains("DMAR"), let addr = line.range(of: "fault addr 0x"),
                  let dev = line.range(of: "Request device [") else { continue }
            let hex = line[addr.upperBound...].prefix { $0.isHexDigit }
            let device = line[dev.upperBound...].prefix { $0 != "]" }
            if let page = UInt64(hex, radix: 16) {
                out.append(Fault(device: String(device), page: page & ~0xfff, write: line.contains("DMA Write")))
            }
        }
        return out
    }
}
