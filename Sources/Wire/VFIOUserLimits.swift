/// The bounds the vfio-user decoder enforces. The defaults are the spec's
/// defaults for the capabilities (vfio-user.rst, "Version"), which are also
/// what QEMU 11.1 offers (max_data_xfer_size 1 MiB, observed traffic).
public struct VFIOUserLimits: Sendable, Equatable {
    /// Largest `count` of a REGION_READ or REGION_WRITE: the spec forbids a
    /// count above the peer's `max_data_xfer_size`, so the server passes the
    /// value it offered in its VERSION reply.
    public var maxDataTransfer: Int
    /// Largest VERSION capabilities text, NUL included. QEMU's is 194 bytes;
    /// the bound keeps a hostile peer from making the JSON parser work on
    /// megabytes before the session even starts.
    public var maxVersionData: Int

    /// The spec's default transfer size, 1 MiB.
    public static let defaultMaxDataTransfer = 1_048_576

    public init(maxDataTransfer: Int = VFIOUserLimits.defaultMaxDataTransfer, maxVersionData: Int = 4096) {
        self.maxDataTransfer = maxDataTransfer
        self.maxVersionData = maxVersionData
    }

    /// Largest whole message the decoder can accept: a REGION_WRITE (or a
    /// REGION_READ reply) of `maxDataTransfer` bytes, or the longest VERSION.
    /// A framing layer refuses a header announcing more before reading it.
    public var maxMessageSize: Int {
        VFIOUserHeader.size + max(VFIOUserRegionAccess.size + maxDataTransfer, VFIOUserVersion.fixedSize + maxVersionData)
    }
}
