import CVFIO
import Foundation
import Glibc
import Posix
import UnixIO
import VFIO
import VTdBridgeTestSupport
import Wire
import XCTest
@testable import Daemon

/// The vfio-user server end to end in one process: a client on a real Unix
/// socket, the daemon's real poll loop and bridge, and a fake kernel that
/// records each MAP_DMA, UNMAP_DMA, SET_IRQS and reset.
final class VFIOUserServerTests: XCTestCase {
    private var daemon: InProcessDaemon!
    private var memory: FileDescriptor!
    private static let rw = VFIOUserDMAMap.readable | VFIOUserDMAMap.writeable

    override func setUpWithError() throws {
        daemon = try InProcessDaemon()
        memory = try FileDescriptor.memoryFile(name: "guest RAM", size: 1 << 20)
    }

    override func tearDown() {
        daemon?.stop()
        daemon = nil
        memory = nil
    }

    /// A new descriptor for the guest-RAM memfd, as QEMU sends with every DMA_MAP.
    private func ramFD() throws -> FileDescriptor {
        let copy = fcntl(memory.number, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw SystemError(call: "fcntl", errno: errno) }
        return FileDescriptor(adopting: copy)
    }

    private func connect() throws -> TestVFIOUserClient {
        let client = try TestVFIOUserClient(path: daemon.vfioUserSocket)
        try client.version()
        return client
    }

    private func map(_ client: TestVFIOUserClient, iova: UInt64, size: UInt64, offset: UInt64, flags: UInt32 = rw,
                     fd: Bool = true) throws -> VFIOUserReplyMessage {
        try XCTUnwrap(client.send(.dmaMap(VFIOUserDMAMap(flags: flags, offset: offset, iova: iova, size: size)),
                                  fds: fd ? [ramFD()] : [])).0
    }

    private func unmap(_ client: TestVFIOUserClient, iova: UInt64, size: UInt64, flags: UInt32 = 0) throws -> VFIOUserReplyMessage {
        try XCTUnwrap(client.send(.dmaUnmap(VFIOUserDMAUnmap(flags: flags, iova: iova, size: size)))).0
    }

    private var maps: [FakeKernel.Map] { daemon.kernel.with { $0.maps } }
    private var unmaps: [FakeKernel.Unmap] { daemon.kernel.with { $0.unmaps } }

    // MARK: DMA

    func testDMAMapReachesTheKernelBeforeItsReplyAndPointsIntoTheClientsFile() throws {
        var pattern = [UInt8](repeating: 0, count: 16)
        for i in pattern.indices { pattern[i] = UInt8(0xa0 + i) }
        XCTAssertEqual(pwrite(memory.number, pattern, pattern.count, 0x3000), pattern.count)
        let client = try connect()
        let reply = try map(client, iova: 0x10000, size: 0x2000, offset: 0x3000)
        XCTAssertTrue(reply.succeeded, "\(reply)")
        // The reply came after the kernel had it.
        let made = try XCTUnwrap(maps.last)
        XCTAssertEqual(made.iova, 0x10000)
        XCTAssertEqual(made.size, 0x2000)
        XCTAssertEqual(made.flags, UInt32(cvfio_VFIO_DMA_MAP_FLAG_READ | cvfio_VFIO_DMA_MAP_FLAG_WRITE))
        // The host address is the client's file at the offset it named.
        let seen = UnsafeRawPointer(bitPattern: UInt(made.vaddr)).map { Array(UnsafeRawBufferPointer(start: $0, count: 16)) }
        XCTAssertEqual(seen, pattern)
        // A second DMA_MAP with a new descriptor of the same file: one mapping of the file.
        XCTAssertTrue(try map(client, iova: 0x20000, size: 0x1000, offset: 0x5000, flags: VFIOUserDMAMap.readable).succeeded)
        XCTAssertEqual(maps.last?.vaddr, made.vaddr - 0x3000 + 0x5000)
        XCTAssertEqual(maps.last?.flags, UInt32(cvfio_VFIO_DMA_MAP_FLAG_READ))
        XCTAssertEqual(try daemon.vfioUser()["memory-files"]?.intValue, 1)
        XCTAssertEqual(try daemon.counter("dma-maps"), 2)
        let mappings = try daemon.status()["devices"]?.arrayValue?.first
        XCTAssertEqual(mappings?["mappings"]?.intValue, 2)
        XCTAssertEqual(mappings?["mode"]?.stringValue, "vfio-user")
    }

    func testRefusedMapsLeaveTheKernelUntouchedAndTheSessionServing() throws {
        let client = try connect()
        XCTAssertTrue(try map(client, iova: 0x10000, size: 0x4000, offset: 0).succeeded)
        let before = maps.count
        // Overlapping an existing region: EEXIST, as type1 answers.
        XCTAssertEqual(try map(client, iova: 0x12000, size: 0x4000, offset: 0).errno, UInt32(EEXIST))
        // Past the end of its file (1 MiB).
        XCTAssertEqual(try map(client, iova: 0x40000, size: 0x2000, offset: 0xff000).errno, UInt32(EINVAL))
        // Not page-aligned.
        XCTAssertEqual(try map(client, iova: 0x40800, size: 0x1000, offset: 0).errno, UInt32(EINVAL))
        // Neither read nor write.
        XCTAssertEqual(try map(client, iova: 0x50000, size: 0x1000, offset: 0, flags: 0).errno, UInt32(EINVAL))
        XCTAssertEqual(maps.count, before, "no refused map reached the kernel")
        XCTAssertEqual(try daemon.counter("refused"), 4)
        // The session still serves.
        XCTAssertTrue(try map(client, iova: 0x60000, size: 0x1000, offset: 0).succeeded)
        XCTAssertEqual(maps.count, before + 1)
    }

    func testAMapWithoutAFileIsACountedFaultAndNoError() throws {
        let client = try connect()
        let reply = try map(client, iova: 0xfffc0000, size: 0x40000, offset: 0, flags: VFIOUserDMAMap.readable, fd: false)
        XCTAssertTrue(reply.succeeded, "QEMU must not be stopped by a map it cannot share")
        XCTAssertTrue(maps.isEmpty)
        XCTAssertEqual(try daemon.counter("maps-without-file"), 1)
        let faults = try daemon.status()["devices"]?.arrayValue?.first?["faults"]
        XCTAssertEqual(faults?["dma-map-without-file"]?.intValue, 1)
    }

    func testAnUnmapThatCutsARegionUnmapsItWholeAndMapsWhatLiesOutside() throws {
        let client = try connect()
        XCTAssertTrue(try map(client, iova: 0x100000, size: 0x4000, offset: 0x8000).succeeded)
        let base = try XCTUnwrap(maps.last).vaddr
        let reply = try unmap(client, iova: 0x101000, size: 0x1000)
        XCTAssertTrue(reply.succeeded)
        XCTAssertEqual(unmaps.last, FakeKernel.Unmap(iova: 0x100000, size: 0x4000, flags: 0), "the whole region goes first")
        let remapped = maps.suffix(2).map { [$0.iova, $0.size, $0.vaddr] }
        XCTAssertEqual(remapped, [[0x100000, 0x1000, base], [0x102000, 0x2000, base + 0x2000]])
        XCTAssertEqual(try daemon.counter("straddled-regions"), 1)
        // Nothing inside the range stays mapped; the rest is still exact.
        let mappings = try ControlClientHelper.mappings(daemon)
        XCTAssertEqual(mappings, [[0x100000, 0x1000], [0x102000, 0x2000]])
    }

    func testAnUnmapCoveringSeveralRegionsRemovesEachAndAnEmptyOneIsDone() throws {
        let client = try connect()
        for i in 0..<4 as Range<UInt64> {
            XCTAssertTrue(try map(client, iova: 0x200000 + i * 0x1000, size: 0x1000, offset: i * 0x1000).succeeded)
        }
        XCTAssertTrue(try unmap(client, iova: 0x200000, size: 0x200000).succeeded)
        XCTAssertEqual(Set(unmaps.suffix(4).map(\.iova)), [0x200000, 0x201000, 0x202000, 0x203000])
        XCTAssertEqual(try ControlClientHelper.mappings(daemon), [])
        let calls = unmaps.count
        // Nothing there (QEMU's translation-off unmaps), up to 2^64.
        XCTAssertTrue(try unmap(client, iova: 0x8000000000000000, size: 0x8000000000000000).succeeded)
        XCTAssertTrue(try unmap(client, iova: 0x400000, size: 0x1000).succeeded)
        XCTAssertEqual(unmaps.count, calls, "an unmap of nothing costs no ioctl")
        XCTAssertEqual(try daemon.counter("empty-unmaps"), 2)
        // Past 2^64: refused.
        XCTAssertEqual(try unmap(client, iova: 0xffff_ffff_ffff_f000, size: 0x2000).errno, UInt32(EINVAL))
    }

    func testTheKernelsRefusalIsTheRepliesErrnoAndTheRegionIsForgotten() throws {
        let client = try connect()
        daemon.kernel.with { $0.mapErrors = [ENOMEM] }
        XCTAssertEqual(try map(client, iova: 0x10000, size: 0x1000, offset: 0).errno, UInt32(ENOMEM))
        // Forgotten: the same map succeeds now rather than overlapping a ghost.
        XCTAssertTrue(try map(client, iova: 0x10000, size: 0x1000, offset: 0).succeeded)
    }

    func testTheQuotaRefusesAMapWithENOSPC() throws {
        daemon.stop()
        daemon = try InProcessDaemon(quota: 1)
        let client = try connect()
        XCTAssertTrue(try map(client, iova: 0x10000, size: 0x1000, offset: 0).succeeded)
        XCTAssertEqual(try map(client, iova: 0x20000, size: 0x1000, offset: 0).errno, UInt32(ENOSPC))
        XCTAssertEqual(maps.count, 1)
    }

    // MARK: lifecycle

    func testAClientThatGoesLeavesNoMappingAndNoInterruptAndANewOneConnects() throws {
        let client = try connect()
        XCTAssertTrue(try map(client, iova: 0x10000, size: 0x2000, offset: 0).succeeded)
        // The fake kernel keeps only the number; any open file stands in for QEMU's eventfd.
        let eventfd = try ramFD()
        let trigger = VFIOUserIRQSet(flags: VFIOUserIRQSet.dataEventFD | VFIOUserIRQSet.actionTrigger, index: 0, start: 0, count: 1)
        XCTAssertTrue(try XCTUnwrap(try client.send(.deviceSetIRQs(trigger), fds: [eventfd])).0.succeeded)
        XCTAssertEqual(daemon.kernel.with { $0.irqSets.last?.eventfds.count }, 1)
        client.close()
        // The daemon sees the close at its next poll round.
        var connected = true
        for _ in 0..<200 where connected {
            connected = try daemon.vfioUser()["connected"]?.boolValue ?? true
            if connected { usleep(10_000) }
        }
        XCTAssertFalse(connected)
        XCTAssertEqual(try ControlClientHelper.mappings(daemon), [])
        let teardown = daemon.kernel.with { $0.irqSets.last }
        XCTAssertEqual(teardown?.index, 0)
        XCTAssertEqual(teardown?.count, 0, "the interrupt wired to the gone client's eventfd is torn down")
        // A new QEMU connects to the same socket.
        let next = try connect()
        XCTAssertTrue(try map(next, iova: 0x10000, size: 0x2000, offset: 0).succeeded)
        XCTAssertEqual(try daemon.counter("connections"), 2)
    }

    func testASecondClientIsRefusedWhileTheFirstIsConnected() throws {
        let first = try connect()
        let second = try TestVFIOUserClient(path: daemon.vfioUserSocket)
        XCTAssertNil(try second.receiveReply(), "the second client is closed")
        XCTAssertTrue(try map(first, iova: 0x10000, size: 0x1000, offset: 0).succeeded)
    }

    func testAPeerTheAccessPolicyRefusesIsClosedWithoutAReplyAndNeverBecomesTheClient() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a client as uid \(SocketSecurityTests.otherUID)") }
        let setpriv = try XCTUnwrap(SocketSecurityTests.setpriv, "setpriv (util-linux) is needed")
        let python = try XCTUnwrap(SocketSecurityTests.python, "a python3 that uid 65534 can run is needed")
        // Reachable by file mode, so that only the daemon's policy decides.
        XCTAssertEqual(chmod(daemon.directory, 0o711), 0)
        XCTAssertEqual(chmod(daemon.vfioUserSocket, 0o666), 0)
        let version = VFIOUserCodec.encodeCommand(.version(VFIOUserVersion(major: 0, minor: 0, capabilities: nil)), messageID: 1)
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sys.argv[1])
        try:
            s.sendall(bytes.fromhex(sys.argv[2]))
            data = s.recv(4096)
            print("eof" if data == b"" else "reply")
        except (BrokenPipeError, ConnectionResetError):
            print("reset")
        """
        let hexMessage = version.map { String(format: "%02x", $0) }.joined()
        let run = try SocketSecurityTests.runAs(setpriv: setpriv, uid: SocketSecurityTests.otherUID, gid: SocketSecurityTests.otherUID,
                                                groups: [], python, ["-I", "-c", script, daemon.vfioUserSocket, hexMessage])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(["eof", "reset"].contains(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "a refused peer gets no reply: \(run.stdout)")
        XCTAssertEqual(try daemon.counter("connections"), 0, "the refused peer never became the client")
        let client = try connect()
        XCTAssertTrue(try map(client, iova: 0x10000, size: 0x1000, offset: 0).succeeded)
    }

    // MARK: bad input

    func testBadMessagesGetClearErrorsAndTheSessionGoesOn() throws {
        let client = try connect()
        // argsz too small for the reply (DEVICE_GET_INFO needs 16).
        var info = VFIOUserCodec.encodeCommand(.deviceGetInfo(VFIOUserDeviceInfo()), messageID: 50)
        info[16] = 4
        XCTAssertEqual(try XCTUnwrap(try client.sendRaw(info)).0.errno, UInt32(EINVAL))
        // A descriptor on a message that takes none: refused, and closed.
        let stray = try ramFD()
        XCTAssertEqual(try XCTUnwrap(try client.send(.deviceGetInfo(VFIOUserDeviceInfo()), fds: [stray])).0.errno, UInt32(EINVAL))
        // A payload shorter than DMA_MAP's 32-byte layout (the header says 40 bytes).
        var short = VFIOUserCodec.encodeCommand(.dmaMap(VFIOUserDMAMap(flags: 3, offset: 0, iova: 0x1000, size: 0x1000)), messageID: 51)
        short.removeLast(8)
        short[4] = UInt8(short.count)
        XCTAssertEqual(try XCTUnwrap(try client.sendRaw(short)).0.errno, UInt32(EINVAL))
        // A write announcing more than max_data_xfer_size: refused on its count.
        var big = VFIOUserCodec.encodeCommand(.regionWrite(VFIOUserRegionAccess(offset: 0, region: 7, count: 4), data: [1, 2, 3, 4]), messageID: 52)
        big.replaceSubrange(28..<32, with: [0, 0, 0x20, 0]) // count 2 MiB, 4 bytes sent
        XCTAssertEqual(try XCTUnwrap(try client.sendRaw(big)).0.errno, UInt32(E2BIG))
        // A region index out of range.
        XCTAssertEqual(try XCTUnwrap(try client.send(.deviceGetRegionInfo(VFIOUserRegionInfo(index: 40)))).0.errno, UInt32(EINVAL))
        XCTAssertEqual(try XCTUnwrap(try client.send(.regionRead(VFIOUserRegionAccess(offset: 0, region: 40, count: 4)))).0.errno, UInt32(EINVAL))
        // A read past the region's end, and one above max_data_xfer_size.
        XCTAssertEqual(try XCTUnwrap(try client.send(.regionRead(VFIOUserRegionAccess(offset: 0xfc, region: 7, count: 8)))).0.errno, UInt32(EINVAL))
        XCTAssertEqual(try XCTUnwrap(try client.send(.regionRead(VFIOUserRegionAccess(offset: 0, region: 0, count: 2 << 20)))).0.errno, UInt32(E2BIG))
        // Still serving.
        let good = try XCTUnwrap(try client.send(.deviceGetInfo(VFIOUserDeviceInfo())))
        XCTAssertTrue(good.0.succeeded)
        XCTAssertGreaterThanOrEqual(try daemon.counter("refused"), 8)
        XCTAssertEqual(daemon.kernel.with { $0.deviceMemory[0x1000] }, 0, "no refused write reached the device")
        XCTAssertTrue(maps.isEmpty, "no refused message reached the kernel")
    }

    func testVersionOffersNoMoreDMARegionsThanTheClientDoes() throws {
        let client = try TestVFIOUserClient(path: daemon.vfioUserSocket)
        let caps = VFIOUserCapabilities(maxMessageFDs: 16, maxDMAMaps: 1000)
        let reply = try XCTUnwrap(client.send(.version(VFIOUserVersion(major: 0, minor: 0, capabilities: caps)))).0
        guard case let .success(.version(version)) = reply.outcome else { return XCTFail("no VERSION reply: \(reply)") }
        XCTAssertEqual(version.major, 0)
        XCTAssertEqual(version.capabilities?.maxDMAMaps, 1000, "QEMU refuses a server offering more than it does")
        XCTAssertEqual(version.capabilities?.pageSizes, 4096)
        XCTAssertNil(version.capabilities?.migration)
        XCTAssertEqual(version.capabilities?.writeMultiple, false)
    }

    func testAMessageBeforeVersionIsRefused() throws {
        let client = try TestVFIOUserClient(path: daemon.vfioUserSocket)
        XCTAssertEqual(try XCTUnwrap(try client.send(.deviceGetInfo(VFIOUserDeviceInfo()))).0.errno, UInt32(EINVAL))
        try client.version()
    }

    func testASizeThatCannotBeFramedClosesThatConnectionOnlyAndTheServerGoesOn() throws {
        let client = try connect()
        var bad = VFIOUserCodec.encodeCommand(.deviceGetInfo(VFIOUserDeviceInfo()), messageID: 9)
        bad[4] = 8 // message size 8: below the header's own 16 bytes
        bad[5] = 0
        let reply = try XCTUnwrap(try client.sendRaw(bad))
        XCTAssertEqual(reply.0.errno, UInt32(EINVAL))
        XCTAssertNil(try client.receiveReply(), "the stream cannot be resynchronised, so it is closed")
        let next = try connect()
        XCTAssertTrue(try map(next, iova: 0x10000, size: 0x1000, offset: 0).succeeded)
    }

    // MARK: the device

    func testDeviceQuestionsAreAnsweredFromTheVFIODevice() throws {
        let client = try connect()
        guard case let .success(.deviceGetInfo(info)) = try XCTUnwrap(try client.send(.deviceGetInfo(VFIOUserDeviceInfo()))).0.outcome else {
            return XCTFail("no device info")
        }
        XCTAssertEqual(info.regionCount, 9)
        XCTAssertEqual(info.irqCount, 5)
        XCTAssertEqual(UInt(info.flags), cvfio_VFIO_DEVICE_FLAGS_PCI | cvfio_VFIO_DEVICE_FLAGS_RESET)
        // BAR0 is mappable: it comes with the device descriptor and the kernel's offset.
        let bar = try XCTUnwrap(try client.send(.deviceGetRegionInfo(VFIOUserRegionInfo(index: 0))))
        guard case let .success(.deviceGetRegionInfo(region, _)) = bar.0.outcome else { return XCTFail("no region info") }
        XCTAssertEqual(region.size, 0x1000)
        XCTAssertNotEqual(region.flags & VFIOUserRegionInfo.flagMmap, 0)
        XCTAssertEqual(bar.1.count, 1, "the device fd travels with a mappable region")
        // Config space: no descriptor; reads and writes reach pread/pwrite.
        let config = try XCTUnwrap(try client.send(.deviceGetRegionInfo(VFIOUserRegionInfo(index: 7))))
        XCTAssertTrue(config.0.succeeded)
        XCTAssertEqual(config.1.count, 0)
        daemon.kernel.with { $0.deviceMemory[0x1000 ..< 0x1004] = [0x34, 0x12, 0xe8, 0x11] }
        let read = try XCTUnwrap(try client.send(.regionRead(VFIOUserRegionAccess(offset: 0, region: 7, count: 4))))
        guard case let .success(.regionRead(_, data)) = read.0.outcome else { return XCTFail("no read") }
        XCTAssertEqual(data, [0x34, 0x12, 0xe8, 0x11])
        XCTAssertTrue(try XCTUnwrap(try client.send(.regionWrite(VFIOUserRegionAccess(offset: 4, region: 7, count: 2), data: [6, 0]))).0.succeeded)
        // A posted write gets no reply: the next reply is the next command's.
        XCTAssertNil(try client.send(.regionWrite(VFIOUserRegionAccess(offset: 0x10, region: 7, count: 4), data: [0, 0, 0, 0xfe]), noReply: true))
        guard case .success(.deviceGetIRQInfo) = try XCTUnwrap(try client.send(.deviceGetIRQInfo(VFIOUserIRQInfo(index: 0)))).0.outcome else {
            return XCTFail("the reply after a posted write must be the IRQ info")
        }
        XCTAssertEqual(daemon.kernel.with { Array($0.deviceMemory[0x1004 ..< 0x1006]) }, [6, 0])
        XCTAssertEqual(daemon.kernel.with { $0.deviceMemory[0x1013] }, 0xfe)
        // The error interrupt a conventional device lacks: the kernel's EINVAL.
        XCTAssertEqual(try XCTUnwrap(try client.send(.deviceGetIRQInfo(VFIOUserIRQInfo(index: 3)))).0.errno, UInt32(EINVAL))
        // Unmask with no data (QEMU after a trapped BAR access), then reset.
        let unmask = VFIOUserIRQSet(flags: VFIOUserIRQSet.dataNone | VFIOUserIRQSet.actionUnmask, index: 0, start: 0, count: 1)
        XCTAssertTrue(try XCTUnwrap(try client.send(.deviceSetIRQs(unmask))).0.succeeded)
        XCTAssertEqual(daemon.kernel.with { $0.irqSets.last?.flags }, VFIOUserIRQSet.dataNone | VFIOUserIRQSet.actionUnmask)
        XCTAssertTrue(try XCTUnwrap(try client.send(.deviceReset)).0.succeeded)
        XCTAssertEqual(daemon.kernel.with { $0.resets }, 1)
        // Eventfds must match the count.
        let two = VFIOUserIRQSet(flags: VFIOUserIRQSet.dataEventFD | VFIOUserIRQSet.actionTrigger, index: 0, start: 0, count: 2)
        XCTAssertEqual(try XCTUnwrap(try client.send(.deviceSetIRQs(two), fds: [try ramFD()])).0.errno, UInt32(EINVAL))
    }

    func testARegionsCapabilityChainIsForwardedWhenTheClientHasRoom() throws {
        daemon.stop()
        let chain: [UInt8] = [3, 0, 1, 0, 0, 0, 0, 0] + [UInt8](repeating: 0x5a, count: 24)
        daemon = try InProcessDaemon { s in
            s.regions[2] = .init(size: 0x4000, offset: 0x2000, flags: UInt32(cvfio_VFIO_REGION_INFO_FLAG_READ | cvfio_VFIO_REGION_INFO_FLAG_MMAP),
                                 capabilities: chain)
        }
        let client = try connect()
        let small = try XCTUnwrap(try client.send(.deviceGetRegionInfo(VFIOUserRegionInfo(index: 2))))
        guard case let .success(.deviceGetRegionInfo(first, caps)) = small.0.outcome else { return XCTFail("no region info") }
        XCTAssertEqual(first.argsz, 32 + 32, "the room the chain needs")
        XCTAssertEqual(first.capabilityOffset, 0)
        XCTAssertTrue(caps.isEmpty)
        let big = try XCTUnwrap(try client.send(.deviceGetRegionInfo(VFIOUserRegionInfo(argsz: 64, index: 2))))
        guard case let .success(.deviceGetRegionInfo(full, fullCaps)) = big.0.outcome else { return XCTFail("no region info") }
        XCTAssertEqual(full.capabilityOffset, 32)
        XCTAssertEqual(fullCaps, chain)
        XCTAssertNotEqual(full.flags & VFIOUserRegionInfo.flagCaps, 0)
    }
}

/// The daemon's `mappings` of the one device, as [iova, size] pairs.
enum ControlClientHelper {
    static func mappings(_ daemon: InProcessDaemon) throws -> [[UInt64]] {
        let reply = try VTdBridgeClientBridge.mappings(daemon.controlSocket)
        return (reply["mappings"]?.arrayValue ?? []).map { m in
            [UInt64(m["iova"]?.stringValue?.dropFirst(2) ?? "", radix: 16) ?? 0, UInt64(m["size"]?.stringValue?.dropFirst(2) ?? "", radix: 16) ?? 0]
        }
    }
}
