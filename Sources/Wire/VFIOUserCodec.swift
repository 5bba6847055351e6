import VTd

/// Encoder and decoder of vfio-user messages (QEMU docs/interop/vfio-user.rst),
/// the protocol QEMU's `vfio-user-pci` client speaks to a device server. No
/// I/O: it works on one whole message (header and payload) at a time, and
/// the descriptors that travel beside a message are the caller's business.
///
/// The decoder refuses, with a `VFIOUserWireError` naming the field and the
/// rule, anything the server could not act on safely: a message whose byte
/// count disagrees with its header, a payload shorter or longer than its
/// command's layout, an `argsz` that disagrees with the layout, an unknown or
/// undecoded command, or a transfer above `VFIOUserLimits.maxDataTransfer`.
/// What depends on session state (overlapping maps, region indexes, ...)
/// is the server's to check.
public enum VFIOUserCodec {
    /// Checks a header's announced size before its payload is read, so a
    /// framing layer can refuse a huge message without buffering it. Sizes
    /// below the header's own 16 bytes cannot be framed at all.
    public static func checkAnnouncedSize(_ header: VFIOUserHeader, limits: VFIOUserLimits = VFIOUserLimits()) -> VFIOUserWireError? {
        let size = Int(header.messageSize)
        if size < VFIOUserHeader.size {
            return VFIOUserWireError(.truncated,
                "\(header): message size \(size) is smaller than the \(VFIOUserHeader.size)-byte header it includes (vfio-user.rst, \"Header\")",
                header: header)
        }
        if size > limits.maxMessageSize {
            return VFIOUserWireError(.tooLarge,
                "\(header): message size \(size) is above the limit of \(limits.maxMessageSize) bytes (max_data_xfer_size \(limits.maxDataTransfer) plus the region access header)",
                header: header)
        }
        return nil
    }

    /// Reads and checks the header of a whole message: its size against the
    /// bytes given, the flag bits, the message type, and the command number.
    static func readHeader(_ bytes: UnsafeRawBufferPointer, wantReply: Bool, limits: VFIOUserLimits)
        throws(VFIOUserWireError) -> (VFIOUserHeader, VFIOUserCommand) {
        guard bytes.count >= VFIOUserHeader.size else {
            throw VFIOUserWireError(.truncated,
                "message is \(bytes.count) bytes, shorter than the \(VFIOUserHeader.size)-byte header (vfio-user.rst, \"Header\")")
        }
        let header = VFIOUserHeader.decode(bytes, at: 0)
        if let error = checkAnnouncedSize(header, limits: limits) { throw error }
        let size = Int(header.messageSize)
        guard bytes.count >= size else {
            throw VFIOUserWireError(.truncated,
                "\(header): the header says \(size) bytes but only \(bytes.count) arrived; the message is cut short",
                header: header)
        }
        guard bytes.count == size else {
            throw VFIOUserWireError(.trailingBytes,
                "\(header): \(bytes.count) bytes given for a message whose header says \(size); the framing layer must cut at the message size",
                header: header)
        }
        let undefined = header.flags & ~VFIOUserHeader.definedFlags
        guard undefined == 0 else {
            throw VFIOUserWireError(.malformed,
                "\(header): flags set undefined bits \(hex(undefined)); only bits 0-3 (type), 4 (no reply) and 5 (error) are defined",
                header: header)
        }
        let type = header.flags & VFIOUserHeader.typeMask
        guard type == VFIOUserHeader.typeCommand || type == VFIOUserHeader.typeReply else {
            throw VFIOUserWireError(.malformed,
                "\(header): message type \(type) (flags bits 0-3) is neither 0 (command) nor 1 (reply)", header: header)
        }
        guard header.isReply == wantReply else {
            throw VFIOUserWireError(.wrongType,
                "\(header): a \(wantReply ? "reply" : "command") was expected here, and this is a \(wantReply ? "command" : "reply")",
                header: header)
        }
        if !wantReply, header.isError {
            throw VFIOUserWireError(.malformed,
                "\(header): the error flag (bit 5) is set on a command; it is defined for replies only", header: header)
        }
        if wantReply, header.noReply {
            throw VFIOUserWireError(.malformed,
                "\(header): the no-reply flag (bit 4) is set on a reply; it is defined for commands only", header: header)
        }
        guard let command = VFIOUserCommand(rawValue: header.command) else {
            throw VFIOUserWireError(.unknownCommand,
                "\(header): command \(header.command) is not assigned by the vfio-user spec (1-13, 15-18)", header: header)
        }
        guard command.isDecoded else {
            throw VFIOUserWireError(.unsupportedCommand,
                "\(header): \(command.name) is not supported by this server; it handles VERSION, DMA_MAP, DMA_UNMAP, DEVICE_GET_INFO, DEVICE_GET_REGION_INFO, DEVICE_GET_IRQ_INFO, DEVICE_SET_IRQS, REGION_READ, REGION_WRITE and DEVICE_RESET",
                header: header)
        }
        return (header, command)
    }

    /// Refuses a payload whose length is not `expected`.
    static func expectLength(_ r: LittleEndianReader, _ expected: Int, _ header: VFIOUserHeader, _ layout: String) throws(VFIOUserWireError) {
        guard r.count != expected else { return }
        throw VFIOUserWireError(.badLength,
            "\(header): payload is \(r.count) bytes; it must be exactly \(expected) (\(layout)), so the message size must be \(VFIOUserHeader.size + expected)",
            header: header)
    }

    /// Refuses a payload shorter than the fixed part of its layout.
    static func expectAtLeast(_ r: LittleEndianReader, _ minimum: Int, _ header: VFIOUserHeader, _ layout: String) throws(VFIOUserWireError) {
        guard r.count < minimum else { return }
        throw VFIOUserWireError(.badLength,
            "\(header): payload is \(r.count) bytes, shorter than the \(minimum)-byte fixed part (\(layout))",
            header: header)
    }

    /// Refuses a transfer `count` above the limit.
    static func checkTransfer(_ count: UInt32, _ header: VFIOUserHeader, _ limits: VFIOUserLimits) throws(VFIOUserWireError) {
        guard Int(count) > limits.maxDataTransfer else { return }
        throw VFIOUserWireError(.tooLarge,
            "\(header): count \(count) is above max_data_xfer_size \(limits.maxDataTransfer); the spec forbids a count above the peer's limit (vfio-user.rst, \"Read and Write Operations\")",
            header: header)
    }

    /// A whole message: header (with its size filled in) then the body.
    static func message(command: VFIOUserCommand, messageID: UInt16, flags: UInt32, error: UInt32 = 0,
                        body: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes: [UInt8] = []
        VFIOUserHeader(messageID: messageID, command: command.rawValue, messageSize: 0, flags: flags, error: error).encode(into: &bytes)
        body(&bytes)
        let size = UInt32(bytes.count)
        withUnsafeBytes(of: size.littleEndian) { bytes.replaceSubrange(4 ..< 8, with: $0) }
        return bytes
    }

    static let payloadOffset = VFIOUserHeader.size
}
