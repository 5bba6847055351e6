import Bridge
import VFIO
import VTd

/// One device to attach: which host device, at which guest source-id, with
/// which mapping quota. The config key "devices" holds these as strings; the
/// control socket's `attach` builds the same value from its arguments.
///
/// Text form: `HOST=GUEST[,quota=N][,vfio-user=PATH]`
///
/// - HOST: a PCI address, `DDDD:BB:DD.F` or `BB:DD.F` (domain 0000), hex,
///   either case; or `group:N`, a VFIO group number (decimal).
/// - GUEST: the guest source-id `BB:DD.F` (hex), as the guest's IOMMU sees it.
/// - quota: the most mappings for this device, a positive decimal number;
///   without it the config key "mapping-quota" applies.
/// - vfio-user: an absolute socket path. The daemon serves the device there
///   to a vfio-user client (QEMU's `vfio-user-pci`), whose DMA_MAP and
///   DMA_UNMAP messages then feed the device's mappings (docs/VFIO-USER.md).
///
/// Examples: `0000:01:00.0=00:03.0`, `01:00.0=00:03.0,quota=4096`,
/// `group:12=00:04.0`, `01:00.0=00:03.0,vfio-user=/run/vtd-bridge/vm0/edu.sock`.
public struct DeviceSpec: Sendable, Equatable, CustomStringConvertible {
    /// The host side, as the host backends name it.
    public typealias Host = HostDeviceAddress

    public var host: Host
    public var guest: SourceID
    /// Most mappings for this device; nil: the daemon-wide "mapping-quota".
    public var quota: Int?
    /// Where to serve the device to a vfio-user client; nil: no server, the
    /// device's mappings come from the event channel.
    public var vfioUserSocket: String?

    public init(host: Host, guest: SourceID, quota: Int? = nil, vfioUserSocket: String? = nil) {
        self.host = host
        self.guest = guest
        self.quota = quota
        self.vfioUserSocket = vfioUserSocket
    }

    /// The text form, which `parse` reads back to an equal value.
    public var description: String {
        "\(host)=\(guest)" + (quota.map { ",quota=\($0)" } ?? "") + (vfioUserSocket.map { ",vfio-user=\($0)" } ?? "")
    }

    static let expectedForm =
        "expected HOST=GUEST[,quota=N][,vfio-user=PATH], e.g. \"0000:01:00.0=00:03.0\", \"01:00.0=00:03.0,quota=4096\" or \"group:12=00:04.0,vfio-user=/run/vtd-bridge/vm0/dev0.sock\""

    /// Parses the text form. Errors have key "devices" and no source; the
    /// config loader adds which entry and where it came from.
    public static func parse(_ text: String) throws(ConfigError) -> DeviceSpec {
        func fail(_ message: String) -> ConfigError {
            ConfigError(key: "devices", message: "\"\(text)\": \(message)")
        }
        let trimmed = ConfigText.trim(text)
        guard !trimmed.isEmpty else { throw fail("empty device; " + expectedForm) }
        let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
        let binding = fields[0].split(separator: "=", omittingEmptySubsequences: false)
        guard binding.count == 2 else {
            throw fail(binding.count < 2 ? "no \"=\" between host and guest; " + expectedForm
                                         : "more than one \"=\" before the first \",\"; " + expectedForm)
        }
        let hostText = ConfigText.trim(binding[0])
        let guestText = ConfigText.trim(binding[1])

        let host: Host
        if hostText.lowercased().hasPrefix("group:") {
            let digits = hostText.dropFirst("group:".count)
            guard ConfigText.isDecimal(digits), let number = Int(digits), number <= Int(Int32.max) else {
                throw fail("host \"\(hostText)\" is not a VFIO group; expected group:N with N a decimal group number as in /dev/vfio/N")
            }
            host = .group(number)
        } else {
            guard let address = PCIAddress(hostText) else {
                throw fail("host \"\(hostText)\" is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F in hex (as lspci -D prints it), or group:N")
            }
            host = .pci(address.description)
        }

        guard let guest = SourceID(guestText) else {
            throw fail("guest \"\(guestText)\" is not a source-id; expected BB:DD.F in hex (bus 00-ff, device 00-1f, function 0-7), the device's address in the guest")
        }

        var quota: Int?
        var socket: String?
        for option in fields.dropFirst() {
            let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = ConfigText.trim(pair[0])
            if name == "vfio-user" {
                guard socket == nil else { throw fail("vfio-user is given twice; give it once") }
                let path = pair.count == 2 ? ConfigText.trim(pair[1]) : ""
                socket = try checkSocketPath(path, fail)
                continue
            }
            guard name == "quota" else {
                throw fail(name.isEmpty ? "empty option after \",\"; the options are quota=N and vfio-user=PATH"
                                        : "unknown option \"\(name)\"; the options are quota=N and vfio-user=PATH")
            }
            guard quota == nil else { throw fail("quota is given twice; give it once") }
            guard pair.count == 2 else { throw fail("quota has no value; expected quota=N with N a positive number of mappings") }
            let value = ConfigText.trim(pair[1])
            guard ConfigText.isDecimal(value), let n = Int(value), n > 0 else {
                throw fail("quota \"\(value)\" is not a positive whole number; expected quota=N with N ≥ 1 mappings (omit it for the default mapping-quota)")
            }
            quota = n
        }
        return DeviceSpec(host: host, guest: guest, quota: quota, vfioUserSocket: socket)
    }

    /// A vfio-user socket path: absolute, and short enough for sockaddr_un.
    static func checkSocketPath(_ path: String, _ fail: (String) -> ConfigError) throws(ConfigError) -> String {
        guard !path.isEmpty else { throw fail("vfio-user has no value; expected vfio-user=PATH with PATH an absolute socket path") }
        guard path.hasPrefix("/") else { throw fail("vfio-user socket \"\(path)\" is not an absolute path; give the full path QEMU's vfio-user-pci socket= will name") }
        // sun_path holds 108 bytes, NUL included (unix(7)).
        guard path.utf8.count <= 107 else { throw fail("vfio-user socket path is \(path.utf8.count) bytes; a Unix socket path holds at most 107") }
        return path
    }
}

