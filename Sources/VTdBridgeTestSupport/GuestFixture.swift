import Bridge
import Logging
import VTd
import VTdGuest

/// A simulated guest for tests: RAM in a memfd, a table area at its top, and
/// the guest-side table writer.
public final class GuestFixture {
    public let memory: GuestRAM
    public var writer: GuestTableWriter<GuestRAM>
    public let caps: IOMMUCapabilities

    /// `ramSize` bytes of RAM at GPA 0 (and optionally a second region),
    /// the top `tableAreaSize` bytes reserved for tables.
    public init(ramSize: UInt64 = 64 << 20, tableAreaSize: UInt64 = 8 << 20,
                extraRegions: [GuestRAMRegionSpec] = [],
                caps: IOMMUCapabilities = .make()) throws {
        memory = try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: ramSize, backing: .anonymous)] + extraRegions)
        self.caps = caps
        writer = try GuestTableWriter(memory: memory, caps: caps,
                                      tableArea: (ramSize - tableAreaSize)..<ramSize)
    }

    public static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// A bridge over this guest's RAM with its root table set and translation on.
    public func makeBridge() throws -> GuestIOMMU {
        let bridge = try GuestIOMMU(caps: caps, logger: Self.quietLogger)
        _ = bridge.setMemory(memory)
        _ = bridge.setRootTable(writer.rootTable)
        _ = bridge.setTranslationEnabled(true)
        return bridge
    }
}
