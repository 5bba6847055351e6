import ArgumentParser
import Glibc
import Posix
import UnixIO
import Wire

/// `vtdbridge-sim vfio-user-stub --socket PATH`: a vfio-user server that
/// answers at once (`VFIOUserStubDevice`), for QEMU's `vfio-user-pci`. The
/// benchmark times a guest's invalidation against it and against vtdbridged:
/// the difference is what the daemon and the kernel add.
///
/// One client at a time, in this one thread: each message is answered
/// before the next is read, as vtdbridged does. When a client goes, a line
/// with its counters goes to stderr and the next client may connect. Runs
/// until killed.
struct VFIOUserStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfio-user-stub",
        abstract: "A vfio-user server with edu's IDs that answers every message at once (for make bench).")

    @Option(help: ArgumentHelp("The socket to listen on.", valueName: "PATH"))
    var socket: String

    func run() throws {
        let listener = try UnixListener.listen(path: socket, mode: 0o600)
        defer { listener.close() }
        while true {
            var entry = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, -1) < 0 {
                if errno == EINTR { continue }
                throw SystemError(call: "poll", errno: errno, subject: socket)
            }
            guard let connection = try listener.accept(nonBlocking: false) else { continue }
            let counters = serve(connection)
            connection.close()
            FileHandleStderr.write("vfio-user-stub: client pid \(connection.peer.pid) gone: \(counters)\n")
        }
    }

    /// Answers one client until it closes the connection or sends what
    /// cannot be framed.
    func serve(_ connection: UnixConnection) -> VFIOUserStubDevice.Counters {
        var device = VFIOUserStubDevice()
        var decoder = VFIOUserStreamDecoder<FileDescriptor>()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: VFIOUserLimits().maxMessageSize, alignment: 16)
        defer { buffer.deallocate() }
        do {
            while true {
                switch try connection.receive(into: buffer) {
                case .wouldBlock:
                    continue
                case .closed:
                    for fd in decoder.takeAllFDs() { try? fd.close() }
                    return device.counters
                case let .data(count, fds):
                    decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), fds: fds)
                }
                while let next = decoder.next() {
                    switch next {
                    case let .failure(error):
                        if let reply = VFIOUserCodec.encodeErrorReply(for: error) { try connection.sendAll(reply) }
                        FileHandleStderr.write("vfio-user-stub: closing the connection: \(error)\n")
                        return device.counters
                    case let .success(message):
                        let reply = device.answer(message.bytes, fds: message.fds.count)
                        for fd in message.fds { try? fd.close() }
                        if let reply { try connection.sendAll(reply) }
                    }
                }
            }
        } catch {
            FileHandleStderr.write("vfio-user-stub: connection failed: \(error)\n")
            return device.counters
        }
    }
}
