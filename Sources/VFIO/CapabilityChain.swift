import CVFIO

/// One capability found in the chain of a VFIO info reply.
struct VFIOCapability: Equatable, Sendable {
    /// Capability id, e.g. VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE.
    var id: UInt16
    /// Layout version, specific to the id.
    var version: UInt16
    /// Offset of the capability's header from the start of the reply.
    var offset: Int
    /// Bytes from `offset` that belong to this capability: up to the next
    /// capability, or to the end of the valid reply for the last one.
    var length: Int
}

/// Walks the capability chain of a VFIO info reply (include/uapi/linux/vfio.h,
/// struct vfio_info_cap_header).
///
/// The kernel builds the chain in a buffer appended after the fixed struct and
/// links each header to the next by `next`, an offset from the start of the
/// reply, 0 ending the chain (drivers/vfio/vfio_main.c, vfio_info_cap_add and
/// vfio_info_cap_shift). We do not trust it blindly: every header must lie
/// inside the bytes the kernel said it filled, and offsets must strictly move
/// forward, past the current header, which both rules out loops and bounds the
/// walk by the reply size.
enum CapabilityChain {
    static let headerSize = Int(cvfio_sizeof_vfio_info_cap_header)
    static let versionOffset = Int(cvfio_offsetof_vfio_info_cap_header_version)
    static let nextOffset = Int(cvfio_offsetof_vfio_info_cap_header_next)

    /// The capabilities of `reply`, in chain order.
    ///
    /// - Parameters:
    ///   - reply: the valid bytes of the reply (already cut to the kernel's argsz).
    ///   - firstOffset: the fixed struct's `cap_offset`; 0 means no chain.
    ///   - fixedSize: size of the fixed struct; the chain must start after it.
    ///   - operation, subject: name the failed call in the error.
    static func walk(
        _ reply: UnsafeRawBufferPointer,
        firstOffset: Int,
        fixedSize: Int,
        operation: String,
        subject: String
    ) throws(VFIOError) -> [VFIOCapability] {
        func malformed(_ why: String) -> VFIOError {
            VFIOError(operation: operation, subject: subject, errno: 0,
                      detail: "malformed capability chain: \(why)")
        }
        guard firstOffset != 0 else { return [] }
        guard firstOffset >= fixedSize else {
            throw malformed("first capability at \(firstOffset) overlaps the \(fixedSize)-byte fixed header")
        }
        var capabilities: [VFIOCapability] = []
        var offset = firstOffset
        while true {
            guard offset <= reply.count - headerSize else {
                throw malformed("capability header at \(offset) runs past the \(reply.count)-byte reply")
            }
            let id = reply.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
            let version = reply.loadUnaligned(fromByteOffset: offset + versionOffset, as: UInt16.self)
            let next = Int(reply.loadUnaligned(fromByteOffset: offset + nextOffset, as: UInt32.self))
            if next == 0 {
                capabilities.append(VFIOCapability(id: id, version: version, offset: offset,
                                                   length: reply.count - offset))
                return capabilities
            }
            guard next >= offset + headerSize else {
                throw malformed("capability at \(offset) links back to \(next)")
            }
            capabilities.append(VFIOCapability(id: id, version: version, offset: offset,
                                               length: next - offset))
            offset = next
        }
    }
}
