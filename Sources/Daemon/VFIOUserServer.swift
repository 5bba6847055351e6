import Bridge
import Posix
import UnixIO
import VFIO
import VTd
import Wire

/// The vfio-user server of one attached device (docs/VFIO-USER.md): a
/// listening socket, at most one client session at a time, and what the
/// server has done for `status`.
///
/// QEMU's `vfio-user-pci` connects here; its DMA_MAP and DMA_UNMAP become
/// the device's mappings through the bridge, and its device messages are
/// answered from the real VFIO device. A second client waits for the first
/// to go (one QEMU owns a device), and a new one may connect after it.
final class VFIOUserServer {
    let guest: SourceID
    let listener: UnixListener
    var session: VFIOUserSession?
    var counters = Counters()
    /// Region infos by index, as the kernel gave them: REGION_READ and
    /// REGION_WRITE check bounds against them without an ioctl each.
    var regions: [UInt32: RegionInfo] = [:]

    struct Counters {
        var connections = 0
        var messages = 0
        /// Error replies (and refused posted writes).
        var refused = 0
        var dmaMaps = 0
        var dmaUnmaps = 0
        /// DMA_UNMAPs whose range held no region (answered as done).
        var emptyUnmaps = 0
        /// Regions cut by a DMA_UNMAP edge (unmapped whole, outside re-mapped).
        var straddled = 0
        /// DMA_MAPs without a file descriptor (counted faults).
        var mapsWithoutFile = 0
        var regionReads = 0
        var regionWrites = 0
        var irqSets = 0
        var resets = 0
    }

    init(guest: SourceID, listener: UnixListener) {
        self.guest = guest
        self.listener = listener
    }

    var path: String { listener.path }
}

/// One client connection of a `VFIOUserServer`.
final class VFIOUserSession {
    let server: VFIOUserServer
    let connection: UnixConnection
    var decoder: VFIOUserStreamDecoder<FileDescriptor>
    var outbound = OutboundQueue()
    var closing = false
    /// VERSION was answered: until then nothing else is accepted (the spec
    /// makes it the first message).
    var negotiated = false
    /// What the client offered in its VERSION.
    var clientCapabilities = VFIOUserCapabilities()
    /// The files its DMA_MAPs brought, mapped once each.
    let memory: VFIOUserMemory
    /// Interrupt indexes the client wired to eventfds: torn down when it goes.
    var wiredIRQs: Set<UInt32> = []

    init(server: VFIOUserServer, connection: UnixConnection, limits: VFIOUserLimits, memory: VFIOUserMemory = VFIOUserMemory()) {
        self.server = server
        self.connection = connection
        self.memory = memory
        decoder = VFIOUserStreamDecoder(limits: limits)
    }
}

/// The listening socket of a server: readiness means a client to accept.
final class VFIOUserListenerClient: PollClient {
    let server: VFIOUserServer
    init(_ server: VFIOUserServer) { self.server = server }
    var pollDescriptor: Int32 { server.listener.fd }
    var interest: PollInterest { .read }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.acceptVFIOUser(server) }
}

extension VFIOUserSession: PollClient {
    var pollDescriptor: Int32 { connection.fd }
    var interest: PollInterest {
        PollInterest(readable: !closing && outbound.byteCount < Daemon.readPauseBytes, writable: !outbound.isEmpty)
    }
    func service(_ event: Poller.Event, daemon: Daemon) { daemon.serviceVFIOUser(self, event) }
}
