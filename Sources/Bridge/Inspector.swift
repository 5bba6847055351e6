import Logging
import VFIO
import VTd

/// The offline inspector behind `vtdbridgectl walk`: the translation the
/// daemon would establish for one device, from a guest RAM image or a live
/// shared-memory file, opened read-only.
///
/// It runs the daemon's own code path (GuestIOMMU, AddressSpace, the walker)
/// over a dry-run backend, so what it prints is what the daemon would map.
public enum Inspector {
    public struct Options: Sendable {
        public var regions: [GuestRAMRegionSpec]
        public var rootTable: UInt64
        public var device: SourceID
        public var caps: IOMMUCapabilities
        /// Usable host IOVA ranges to assume; nil: all.
        public var iovaRanges: [IOVARange]?

        public init(regions: [GuestRAMRegionSpec], rootTable: UInt64, device: SourceID,
                    caps: IOMMUCapabilities = .make(), iovaRanges: [IOVARange]? = nil) {
            self.regions = regions
            self.rootTable = rootTable
            self.device = device
            self.caps = caps
            self.iovaRanges = iovaRanges
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case memory(GuestRAMError)
        case bridge(BridgeError)
        public var description: String {
            switch self {
            case let .memory(e): "guest memory: \(e)"
            case let .bridge(e): "\(e)"
            }
        }
    }

    public static func walk(_ options: Options, logger: Logger) throws(Failure) -> TranslationReport {
        let memory: GuestRAM
        do { memory = try GuestRAM(options.regions, writable: false) } catch { throw .memory(error) }
        var caps = options.caps
        // The inspector only reads; it needs no caching mode to show a table.
        caps.cap |= 1 << 7
        let iommu: GuestIOMMU
        do { iommu = try GuestIOMMU(caps: caps, logger: logger) } catch { throw .bridge(error) }
        _ = iommu.setMemory(memory)
        _ = iommu.setRootTable(options.rootTable)
        _ = iommu.setTranslationEnabled(true)
        let backend = DryRunBackend(info: IOMMUInfo(pageSizes: 0x4020_1000, iovaRanges: options.iovaRanges, dmaAvailable: nil))
        do {
            try iommu.attach(options.device, backend: backend, faultLogCapacity: Int.max)
        } catch {
            throw .bridge(error)
        }
        return TranslationReport(space: iommu.spaces[options.device]!, memory: memory)
    }
}
