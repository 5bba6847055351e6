import VTd

/// A PCI function address in the kernel's sysfs spelling, "DDDD:BB:DD.F".
public struct PCIAddress: Sendable, Hashable, CustomStringConvertible {
    public var domain: UInt16
    public var bus: UInt8
    /// Device number, 0...31.
    public var device: UInt8
    /// Function number, 0...7.
    public var function: UInt8

    public init(domain: UInt16 = 0, bus: UInt8, device: UInt8, function: UInt8) {
        precondition(device < 32 && function < 8, "PCI device must be < 32 and function < 8")
        self.domain = domain
        self.bus = bus
        self.device = device
        self.function = function
    }

    /// Parses "DDDD:BB:DD.F" or the short "BB:DD.F" (domain 0000), in hex,
    /// either case. Returns nil for anything else.
    public init?(_ text: String) {
        let dot = text.split(separator: ".", omittingEmptySubsequences: false)
        guard dot.count == 2, dot[1].count == 1,
              let function = UInt8(dot[1], radix: 16), function < 8 else { return nil }
        let parts = dot[0].split(separator: ":", omittingEmptySubsequences: false)
        let domainText: Substring
        let busText: Substring
        let deviceText: Substring
        switch parts.count {
        case 3: (domainText, busText, deviceText) = (parts[0], parts[1], parts[2])
        case 2: (domainText, busText, deviceText) = ("0000", parts[0], parts[1])
        default: return nil
        }
        guard domainText.count == 4, busText.count == 2, deviceText.count == 2,
              let domain = UInt16(domainText, radix: 16),
              let bus = UInt8(busText, radix: 16),
              let device = UInt8(deviceText, radix: 16), device < 32,
              // UInt(_:radix:) accepts a leading "+"/"-"; sysfs names never have one.
              !(domainText + busText + deviceText).contains(where: { $0 == "+" || $0 == "-" })
        else { return nil }
        self.init(domain: domain, bus: bus, device: device, function: function)
    }

    public var description: String {
        hexDigits(domain, width: 4) + ":" + hexDigits(bus, width: 2) + ":"
            + hexDigits(device, width: 2) + "." + String(function, radix: 16)
    }
}
