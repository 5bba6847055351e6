/// Which edu the qtest guest drives at 00:03.0.
///
/// - `edu`: QEMU's own emulated edu, behind QEMU's emulated VT-d. Needs no
///   daemon: it proves the guest side (tables, invalidations, DMA checks) on
///   any QEMU with intel-iommu and edu, such as Debian bookworm's 7.2.
/// - `vfio-user:SOCKET[,PROP=VALUE...]`: a vfio-user-pci device whose server
///   listens on SOCKET (vtdbridged proxying a real edu). QEMU 10.1 or later.
///   PROP=VALUE pairs are added to the device's JSON (numbers and true/false
///   as JSON numbers and booleans), e.g. `x-msg-timeout=10000`.
enum QEMUDeviceKind: CustomStringConvertible {
    case emulatedEdu
    case vfioUser(socket: String, properties: [(name: String, value: String)])

    /// The guest slot: bus 0, device 3, function 0 (source-id 0x0018).
    static let slot = "03.0"

    init?(argument: String) {
        if argument == "edu" {
            self = .emulatedEdu
            return
        }
        guard argument.hasPrefix("vfio-user:") else { return nil }
        let parts = argument.dropFirst("vfio-user:".count).split(separator: ",").map(String.init)
        guard let socket = parts.first, socket.hasPrefix("/") else { return nil }
        var properties: [(String, String)] = []
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else { return nil }
            properties.append((kv[0], kv[1]))
        }
        self = .vfioUser(socket: socket, properties: properties)
    }

    var isEmulated: Bool {
        if case .emulatedEdu = self { return true }
        return false
    }

    /// The value of QEMU's -device option.
    var deviceArgument: String {
        switch self {
        case .emulatedEdu:
            return "edu,addr=\(Self.slot)"
        case let .vfioUser(socket, properties):
            // vfio-user-pci's socket is a SocketAddress, a nested object:
            // only the JSON form of -device can express it.
            var fields = ["\"driver\":\"vfio-user-pci\"", "\"addr\":\"\(Self.slot)\"",
                          "\"socket\":{\"type\":\"unix\",\"path\":\(Self.jsonString(socket))}"]
            for (name, value) in properties {
                let literal = Int64(value) != nil || value == "true" || value == "false" ? value : Self.jsonString(value)
                fields.append("\(Self.jsonString(name)):\(literal)")
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    var description: String {
        switch self {
        case .emulatedEdu: "QEMU's emulated edu"
        case let .vfioUser(socket, _): "vfio-user-pci on \(socket)"
        }
    }

    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where c.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count) + String(c.value, radix: 16)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
