import Foundation
import Glibc

/// The QEMU machine the qtest guest runs on, as a command line: q35 with
/// guest RAM in a shared memfd (what a vfio-user server needs to map it),
/// QEMU's VT-d in caching mode with a 39-bit address width (3-level tables),
/// interrupt remapping off (it would need a split irqchip), and the edu at
/// 00:03.0.
struct QEMUCommandLine {
    /// How QEMU runs without a guest kernel.
    enum Accelerator: String {
        /// `-accel qtest`: no vCPU at all; virtual time moves only by
        /// `clock_step`. Needs QEMU's accel-qtest module, which Debian's
        /// packages of QEMU 7.2 do not ship.
        case qtest
        /// `-accel tcg` with firmware that halts at the reset vector: a vCPU
        /// that never runs an instruction after `hlt` (interrupts are off at
        /// reset), and virtual time that follows the host clock, so the
        /// emulated edu's 100 ms DMA timer fires by itself.
        case tcg
    }

    var binary: String
    var accelerator: Accelerator
    var ramSize: UInt64
    var device: QEMUDeviceKind
    var qtestSocket: String
    /// The halting firmware (TCG only).
    var firmware: String?
    /// Appended as given (e.g. -trace patterns).
    var extra: [String] = []

    var arguments: [String] {
        let mib = ramSize >> 20
        var args = [binary,
                    "-machine", "q35,memory-backend=ram0",
                    "-accel", accelerator.rawValue,
                    "-nodefaults", "-display", "none", "-m", "\(mib)M",
                    "-object", "memory-backend-memfd,id=ram0,size=\(mib)M,share=on",
                    "-device", "intel-iommu,caching-mode=on,intremap=off,aw-bits=39",
                    "-device", device.deviceArgument,
                    // QEMU connects to our listening socket (chardev client
                    // mode), so no wait for its socket file is needed.
                    "-qtest", "unix:\(qtestSocket)",
                    "-qtest-log", "none"]
        if accelerator == .tcg, let firmware { args += ["-bios", firmware] }
        return args + extra
    }

    /// The line as a shell would take it, for transcripts.
    var shellText: String {
        arguments.map { a in
            a.allSatisfy({ $0.isLetter || $0.isNumber || "-_=,./:@".contains($0) }) ? a : "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// 64 KiB of `hlt` (0xf4): the reset vector at 0xfffffff0 is a halt, and
    /// so is every byte after it. QEMU requires a BIOS image to be a
    /// multiple of 64 KiB.
    static func writeHaltingFirmware(at path: String) throws {
        let bytes = [UInt8](repeating: 0xf4, count: 64 << 10)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SimError("creating \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SimError("writing \(path): \(String(cString: strerror(errno)))") }
    }

    /// `name` as execv needs it: as given if it has a slash, else the first
    /// executable match in PATH.
    static func resolve(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        return nil
    }
}
