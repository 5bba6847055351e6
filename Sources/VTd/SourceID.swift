/// A PCI requester id (bus:device.function) as the IOMMU sees it: the source-id
/// of VT-d spec 3.4.1, which indexes the root table (bus) and the context
/// table (devfn).
public struct SourceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public init?(bus: Int, device: Int, function: Int) {
        guard (0...255).contains(bus), (0...31).contains(device), (0...7).contains(function) else { return nil }
        rawValue = UInt16(bus << 8 | device << 3 | function)
    }

    public var bus: UInt8 { UInt8(rawValue >> 8) }
    public var devfn: UInt8 { UInt8(rawValue & 0xff) }
    public var device: UInt8 { devfn >> 3 }
    public var function: UInt8 { devfn & 7 }

    /// Parses "BB:DD.F" (hex, as lspci prints it). A "DDDD:" PCI segment prefix
    /// is accepted when it is 0000: legacy-mode VT-d has one segment per unit.
    public init?(_ text: String) {
        var rest = Substring(text)
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 3 {
            guard let segment = UInt16(parts[0], radix: 16), segment == 0 else { return nil }
            rest = text.dropFirst(parts[0].count + 1)
        } else if parts.count != 2 {
            return nil
        }
        let busAndRest = rest.split(separator: ":", omittingEmptySubsequences: false)
        guard busAndRest.count == 2 else { return nil }
        let devFn = busAndRest[1].split(separator: ".", omittingEmptySubsequences: false)
        guard devFn.count == 2,
              busAndRest[0].count <= 2, devFn[0].count <= 2, devFn[1].count == 1,
              let bus = Int(busAndRest[0], radix: 16),
              let dev = Int(devFn[0], radix: 16),
              let fn = Int(devFn[1], radix: 16) else { return nil }
        self.init(bus: bus, device: dev, function: fn)
    }

    public var description: String {
        "\(hexDigits(bus, width: 2)):\(hexDigits(device, width: 2)).\(function)"
    }

    public static func < (lhs: SourceID, rhs: SourceID) -> Bool { lhs.rawValue < rhs.rawValue }
}
