/// VERSION, command and reply alike (vfio-user.rst, "Version"): major (u16),
/// minor (u16), then optionally a NUL-terminated UTF-8 JSON text holding the
/// capabilities. QEMU 11.1 proposes 0.0 with a 194-byte text (observed).
public struct VFIOUserVersion: Sendable, Equatable {
    public var major: UInt16
    public var minor: UInt16
    /// nil when the message carries no version data at all.
    public var capabilities: VFIOUserCapabilities?

    /// Bytes before the optional version data.
    public static let fixedSize = 4

    public init(major: UInt16, minor: UInt16, capabilities: VFIOUserCapabilities?) {
        self.major = major
        self.minor = minor
        self.capabilities = capabilities
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(major)
        bytes.appendLittleEndian(minor)
        if let capabilities {
            bytes.append(contentsOf: capabilities.json.serialized.utf8)
            bytes.append(0)
        }
    }

    static func decode(_ r: LittleEndianReader, limits: VFIOUserLimits) throws(VFIOUserWireError) -> VFIOUserVersion {
        let major = r.u16(0), minor = r.u16(2)
        let dataLength = r.count - fixedSize
        guard dataLength > 0 else { return VFIOUserVersion(major: major, minor: minor, capabilities: nil) }
        guard dataLength <= limits.maxVersionData else {
            throw VFIOUserWireError(.tooLarge,
                "VERSION version data is \(dataLength) bytes, above the limit of \(limits.maxVersionData)")
        }
        let data = r.slice(fixedSize, dataLength)
        guard data[dataLength - 1] == 0 else {
            throw VFIOUserWireError(.malformed,
                "VERSION version data (\(dataLength) bytes at payload offset 4) does not end in NUL; the spec requires a terminated string (vfio-user.rst, \"Version\")")
        }
        let text = Array(data[0 ..< dataLength - 1])
        let json: JSONValue
        do {
            json = try JSONValue.parse(utf8: text)
        } catch {
            throw VFIOUserWireError(.malformed, "VERSION version data is not valid JSON: \(error)")
        }
        return VFIOUserVersion(major: major, minor: minor, capabilities: try VFIOUserCapabilities(json: json))
    }
}
