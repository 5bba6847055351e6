import Bridge
import CVFIO
import Glibc
import Logging
import Posix
import VFIO
import Wire

/// Answers a vfio-user client's device messages from the real VFIO device:
/// what QEMU's in-process VFIO would ask the kernel, asked on its behalf.
///
/// - Region, IRQ and device info come from the kernel's answers.
/// - A mappable region (a BAR) is offered with a copy of the device
///   descriptor and the kernel's region offset, so QEMU mmaps the BAR itself
///   and no BAR access passes through the daemon.
/// - REGION_READ and REGION_WRITE are pread/pwrite on the device descriptor.
/// - SET_IRQS hands the client's eventfds to VFIO_DEVICE_SET_IRQS: the
///   kernel signals QEMU directly.
/// - DEVICE_RESET is VFIO_DEVICE_RESET.
struct VFIOUserDeviceProxy {
    let device: Device
    let server: VFIOUserServer
    let logger: Logger

    typealias Answer = (reply: VFIOUserReply, fds: [FileDescriptor])

    func handle(_ request: VFIOUserRequest, header: VFIOUserHeader, fds: [FileDescriptor],
                session: VFIOUserSession) -> Result<Answer, VFIOUserRefusal> {
        do throws(VFIOUserRefusal) {
            switch request {
            case .deviceGetInfo:
                let info = try kernel { () throws(VFIOError) in try device.info() }
                // Device capabilities (VFIO_DEVICE_FLAGS_CAPS) are not
                // forwarded; the other flags are the kernel's.
                let caps: UInt32 = 1 << 7
                return .success((.deviceGetInfo(VFIOUserDeviceInfo(flags: info.flags & ~caps, regionCount: info.numRegions,
                                                                    irqCount: info.numIRQs)), []))
            case let .deviceGetRegionInfo(asked):
                let region = try regionInfo(asked.index, header)
                let needed = UInt32(VFIOUserRegionInfo.size + region.capabilities.count)
                // Like the ioctl: when the client's argsz has no room for the
                // capability chain, the reply says how much it needs, and
                // the client asks again (QEMU does).
                let fits = asked.argsz >= needed
                var reply = VFIOUserRegionInfo(argsz: needed, flags: region.flags, index: asked.index,
                                               capabilityOffset: fits ? region.capabilityOffset : 0,
                                               size: region.size, offset: region.offset)
                if region.capabilities.isEmpty { reply.flags &= ~VFIOUserRegionInfo.flagCaps }
                var out: [FileDescriptor] = []
                if region.supportsMmap && region.size > 0 {
                    out = [try kernel { () throws(VFIOError) in try device.duplicateDescriptor() }]
                }
                return .success((.deviceGetRegionInfo(reply, capabilities: fits ? region.capabilities : []), out))
            case let .deviceGetIRQInfo(asked):
                let count = try kernel { () throws(VFIOError) in try device.info() }.numIRQs
                guard asked.index < count else {
                    throw VFIOUserRefusal(errno: EINVAL, "\(header): interrupt index \(asked.index) is out of range; the device has \(count)")
                }
                let info: IRQInfo
                do {
                    info = try kernel { () throws(VFIOError) in try device.irqInfo(asked.index) }
                } catch where error.errno == EINVAL {
                    // vfio-pci's answer for an index the device lacks (the
                    // error IRQ of a conventional PCI device); QEMU asks
                    // at every start and carries on.
                    throw VFIOUserRefusal(errno: EINVAL, error.message, expected: true)
                }
                return .success((.deviceGetIRQInfo(VFIOUserIRQInfo(flags: info.flags, index: info.index, count: info.count)), []))
            case let .deviceSetIRQs(set):
                try setIRQs(set, header: header, fds: fds, session: session)
                server.counters.irqSets += 1
                return .success((.deviceSetIRQs, []))
            case let .regionRead(access):
                let region = try regionInfo(access.region, header)
                let data = try kernel { () throws(VFIOError) in try device.read(region, at: access.offset, count: Int(access.count)) }
                server.counters.regionReads += 1
                return .success((.regionRead(access, data: data), []))
            case let .regionWrite(access, data):
                let region = try regionInfo(access.region, header)
                try kernel { () throws(VFIOError) in try device.write(region, at: access.offset, bytes: data) }
                server.counters.regionWrites += 1
                return .success((.regionWrite(access), []))
            case .deviceReset:
                try kernel { () throws(VFIOError) in try device.reset() }
                server.counters.resets += 1
                logger.info("vfio-user: device reset", metadata: ["device": "\(server.guest)"])
                return .success((.deviceReset, []))
            case .version, .dmaMap, .dmaUnmap:
                preconditionFailure("the daemon handles \(request.command.name) itself")
            }
        } catch {
            return .failure(error)
        }
    }

    /// The region's info, from the cache or the kernel (with capabilities).
    private func regionInfo(_ index: UInt32, _ header: VFIOUserHeader) throws(VFIOUserRefusal) -> RegionInfo {
        if let known = server.regions[index] { return known }
        let count = try kernel { () throws(VFIOError) in try device.info() }.numRegions
        guard index < count else {
            throw VFIOUserRefusal(errno: EINVAL, "\(header): region \(index) is out of range; the device has \(count) regions (0-\(count == 0 ? 0 : count - 1))")
        }
        let region = try kernel { () throws(VFIOError) in try device.regionInfo(index, capabilities: true) }
        server.regions[index] = region
        return region
    }

    private func setIRQs(_ set: VFIOUserIRQSet, header: VFIOUserHeader, fds: [FileDescriptor],
                         session: VFIOUserSession) throws(VFIOUserRefusal) {
        let action = set.flags & VFIOUserIRQSet.actions
        let data: Device.IRQData
        switch set.flags & VFIOUserIRQSet.dataTypes {
        case VFIOUserIRQSet.dataEventFD:
            // One eventfd per interrupt; count 0 with none tears the index down.
            guard fds.count == Int(set.count) else {
                throw VFIOUserRefusal(errno: EINVAL, "\(header): SET_IRQS with DATA_EVENTFD for \(set.count) interrupt(s) came with \(fds.count) file descriptor(s); send one per interrupt")
            }
            data = .eventfds(fds.map(\.number))
        case VFIOUserIRQSet.dataBool:
            data = .bools(set.boolData)
        default:
            guard fds.isEmpty else {
                throw VFIOUserRefusal(errno: EINVAL, "\(header): SET_IRQS without DATA_EVENTFD came with \(fds.count) file descriptor(s)")
            }
            data = .none
        }
        // The kernel checks index, start and count against the device.
        try kernel { () throws(VFIOError) in
            try device.setIRQs(index: set.index, start: set.start, count: set.count, action: action, data: data)
        }
        if set.flags & VFIOUserIRQSet.dataEventFD != 0, action == VFIOUserIRQSet.actionTrigger {
            if set.count > 0 { session.wiredIRQs.insert(set.index) } else { session.wiredIRQs.remove(set.index) }
        } else if set.flags & VFIOUserIRQSet.dataNone != 0, action == VFIOUserIRQSet.actionTrigger, set.count == 0 {
            session.wiredIRQs.remove(set.index)
        }
    }

    /// Runs a device call; its error becomes the refusal, errno and all
    /// (a bounds error with no errno is EINVAL).
    private func kernel<T>(_ body: () throws(VFIOError) -> T) throws(VFIOUserRefusal) -> T {
        do {
            return try body()
        } catch {
            throw VFIOUserRefusal(errno: error.errno == 0 ? EINVAL : error.errno, "device \(server.guest): \(error)")
        }
    }
}
