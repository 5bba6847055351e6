/// The capabilities in a VERSION message's JSON (vfio-user.rst, "Version"):
/// `{"capabilities": {...}}`. Absent members take the spec's defaults.
///
/// Members the codec does not know (e.g. `twin_socket`, which QEMU 11.1 does
/// not send) are ignored: a reply may only offer a subset of what the client
/// proposed, so a server that drops them stays within the spec.
public struct VFIOUserCapabilities: Sendable, Equatable {
    /// What `migration` describes: the dirty-page bitmap QEMU can receive.
    public struct Migration: Sendable, Equatable {
        public var maxBitmapSize: UInt64
        public var pageSize: UInt64

        public init(maxBitmapSize: UInt64, pageSize: UInt64) {
            self.maxBitmapSize = maxBitmapSize
            self.pageSize = pageSize
        }
    }

    /// Most descriptors the sender can receive in one message (default 1).
    public var maxMessageFDs: UInt32
    /// Largest `count` of a data transfer the sender accepts (default 1 MiB).
    public var maxDataTransferSize: UInt32
    /// DMA page sizes, or'ed together (default 4 KiB only).
    public var pageSizes: UInt64
    /// Most DMA windows valid at once (default 65535).
    public var maxDMAMaps: UInt32
    /// Present when the sender supports migration.
    public var migration: Migration?
    /// Whether REGION_WRITE_MULTI may be sent (default false).
    public var writeMultiple: Bool

    public init(maxMessageFDs: UInt32 = 1, maxDataTransferSize: UInt32 = UInt32(VFIOUserLimits.defaultMaxDataTransfer),
                pageSizes: UInt64 = 4096, maxDMAMaps: UInt32 = 65535, migration: Migration? = nil, writeMultiple: Bool = false) {
        self.maxMessageFDs = maxMessageFDs
        self.maxDataTransferSize = maxDataTransferSize
        self.pageSizes = pageSizes
        self.maxDMAMaps = maxDMAMaps
        self.migration = migration
        self.writeMultiple = writeMultiple
    }

    /// The JSON value: every member written, so the peer need not know the
    /// defaults; `migration` only when present.
    public var json: JSONValue {
        var caps: [String: JSONValue] = [
            "max_msg_fds": JSONValue(integer: maxMessageFDs),
            "max_data_xfer_size": JSONValue(integer: maxDataTransferSize),
            "pgsizes": JSONValue(integer: pageSizes),
            "max_dma_maps": JSONValue(integer: maxDMAMaps),
            "write_multiple": .bool(writeMultiple),
        ]
        if let migration {
            caps["migration"] = .object([
                "max_bitmap_size": JSONValue(integer: migration.maxBitmapSize),
                "pgsize": JSONValue(integer: migration.pageSize),
            ])
        }
        return .object(["capabilities": .object(caps)])
    }

    /// Reads the capabilities from a parsed VERSION JSON. Throws a message
    /// naming the member that has the wrong type or range.
    public init(json: JSONValue) throws(VFIOUserWireError) {
        guard let top = json.objectValue else {
            throw Self.bad("the version data is a JSON \(json.kindDescription); it must be an object")
        }
        self.init()
        guard let capsValue = top["capabilities"] else { return }
        guard let caps = capsValue.objectValue else {
            throw Self.bad("\"capabilities\" is a JSON \(capsValue.kindDescription); it must be an object")
        }
        maxMessageFDs = try Self.integer(caps, "max_msg_fds", UInt32.self) ?? maxMessageFDs
        maxDataTransferSize = try Self.integer(caps, "max_data_xfer_size", UInt32.self) ?? maxDataTransferSize
        pageSizes = try Self.integer(caps, "pgsizes", UInt64.self) ?? pageSizes
        maxDMAMaps = try Self.integer(caps, "max_dma_maps", UInt32.self) ?? maxDMAMaps
        if let value = caps["write_multiple"] {
            guard let flag = value.boolValue else {
                throw Self.bad("\"capabilities.write_multiple\" is a JSON \(value.kindDescription); it must be true or false")
            }
            writeMultiple = flag
        }
        if let value = caps["migration"] {
            guard let object = value.objectValue else {
                throw Self.bad("\"capabilities.migration\" is a JSON \(value.kindDescription); it must be an object")
            }
            guard let bitmap = try Self.integer(object, "max_bitmap_size", UInt64.self, in: "migration."),
                  let page = try Self.integer(object, "pgsize", UInt64.self, in: "migration.") else {
                throw Self.bad("\"capabilities.migration\" must have both \"max_bitmap_size\" and \"pgsize\"")
            }
            migration = Migration(maxBitmapSize: bitmap, pageSize: page)
        }
    }

    private static func integer<T: FixedWidthInteger & UnsignedInteger>(
        _ object: [String: JSONValue], _ key: String, _: T.Type, in prefix: String = ""
    ) throws(VFIOUserWireError) -> T? {
        guard let value = object[key] else { return nil }
        guard let wide = value.uint64Value, let narrow = T(exactly: wide) else {
            throw bad("\"capabilities.\(prefix)\(key)\" is \(value.serialized); it must be an integer from 0 to \(T.max)")
        }
        return narrow
    }

    private static func bad(_ message: String) -> VFIOUserWireError {
        VFIOUserWireError(.malformed, "VERSION capabilities: \(message) (vfio-user.rst, \"Version\")")
    }
}
