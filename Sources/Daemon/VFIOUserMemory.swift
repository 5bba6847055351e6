import Bridge
import Glibc
import Posix

/// The memory a vfio-user client handed over with its DMA_MAPs, mapped into
/// this process: the only memory the daemon maps for that client's device.
///
/// Each DMA_MAP brings a new descriptor (QEMU sends a fresh copy of its
/// guest-RAM memfd every time). Files are told apart by device and inode,
/// and each is mapped once, whole, MAP_SHARED; every later DMA_MAP into the
/// same file resolves to an address in that one mapping, and its descriptor
/// is closed at once (the mapping holds the file). A range must lie inside
/// the file as it is when the DMA_MAP arrives: the host address returned is
/// always inside a mapping of a file the client sent.
///
/// Only regular files are taken (memfd, a file on /dev/shm or hugetlbfs):
/// what could back guest RAM. The mappings go with the session: by then the
/// bridge has unmapped every DMA region of the device (the kernel keeps its
/// own page references while a DMA mapping lives, so the order matters only
/// for the addresses the shadow records).
final class VFIOUserMemory {
    struct File {
        let device: UInt64
        let inode: UInt64
        let base: UnsafeMutableRawPointer
        let length: Int
        let writable: Bool
        /// A descriptor of the file, kept for a hand-over to the next
        /// process (systemd's fd store): the mapping alone cannot be passed.
        let descriptor: FileDescriptor
        var hostAddress: UInt64 { UInt64(UInt(bitPattern: base)) }
    }

    struct Refusal: Error {
        var errno: Int32
        var message: String
    }

    private(set) var files: [File] = []
    /// Most mappings one client may make us hold: a file that grows is
    /// mapped again (the old mapping stays while regions use it), so this
    /// bounds what a client can make us map by growing a file in steps.
    static let maxFiles = 64

    var mappedBytes: Int { files.reduce(0) { $0 + $1.length } }

    /// The host address of [offset, offset + size) of `fd`'s file, mapping
    /// the file if it is new. `fd` is only read; the caller closes it.
    func resolve(_ fd: FileDescriptor, offset: UInt64, size: UInt64, writable: Bool) throws(Refusal) -> UInt64 {
        let status: FileStatus
        do { status = try fd.status() } catch {
            throw Refusal(errno: error.errno, message: "the descriptor sent with DMA_MAP cannot be examined: \(error)")
        }
        guard status.kind == .regular else {
            throw Refusal(errno: EINVAL, message: "the descriptor sent with DMA_MAP is a \(status.kind), not a regular file (memfd, /dev/shm, hugetlbfs): it cannot be guest RAM")
        }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, end <= UInt64(max(status.size, 0)) else {
            throw Refusal(errno: EINVAL, message:
                "DMA_MAP of file offset 0x\(String(offset, radix: 16)) + size 0x\(String(size, radix: 16)) runs past the end of its file (\(status.size) bytes); only memory the client sent can be mapped")
        }
        if let file = files.first(where: { $0.device == status.device && $0.inode == status.inode && end <= UInt64($0.length) }) {
            guard file.writable || !writable else {
                throw Refusal(errno: EACCES, message: "DMA_MAP asks for device write access to a file the client sent read-only")
            }
            return file.hostAddress + offset
        }
        guard files.count < Self.maxFiles else {
            throw Refusal(errno: ENOMEM, message: "the client has sent \(files.count) distinct memory files; \(Self.maxFiles) is the most one session may map")
        }
        guard let length = Int(exactly: status.size), length > 0 else {
            throw Refusal(errno: EINVAL, message: "the file sent with DMA_MAP is \(status.size) bytes")
        }
        var mapWritable = true
        let base: UnsafeMutableRawPointer
        do {
            base = try fd.mapShared(length: length, offset: 0, writable: true)
        } catch where error.errno == EACCES {
            // A descriptor opened read-only: readable DMA only.
            do { base = try fd.mapShared(length: length, offset: 0, writable: false) } catch {
                throw Refusal(errno: error.errno, message: "mapping the file sent with DMA_MAP: \(error)")
            }
            mapWritable = false
        } catch {
            throw Refusal(errno: error.errno, message: "mapping the file sent with DMA_MAP: \(error)")
        }
        let kept: FileDescriptor
        do { kept = try fd.duplicate() } catch {
            try? SharedMapping.unmap(base, length: length)
            throw Refusal(errno: error.errno, message: "keeping the file sent with DMA_MAP: \(error)")
        }
        let file = File(device: status.device, inode: status.inode, base: base, length: length, writable: mapWritable, descriptor: kept)
        files.append(file)
        guard mapWritable || !writable else {
            throw Refusal(errno: EACCES, message: "DMA_MAP asks for device write access to a file the client sent read-only")
        }
        return file.hostAddress + offset
    }

    /// Unmaps every file. Call after the bridge unmapped the device's regions.
    func releaseAll() {
        for file in files {
            try? SharedMapping.unmap(file.base, length: file.length)
            try? file.descriptor.close()
        }
        files.removeAll()
    }

    /// Maps again the files a previous process's session had (handed over
    /// through systemd's fd store), whole, as `resolve` maps them. A file
    /// that cannot be mapped is left out: regions in it stay unresolved and
    /// are unmapped by the next sync.
    func adopt(_ descriptors: [FileDescriptor]) -> [String] {
        var problems: [String] = []
        for fd in descriptors {
            do {
                let status = try fd.status()
                guard status.kind == .regular, let length = Int(exactly: status.size), length > 0 else {
                    problems.append("a stored file is not a non-empty regular file")
                    try? fd.close()
                    continue
                }
                var writable = true
                let base: UnsafeMutableRawPointer
                do {
                    base = try fd.mapShared(length: length, offset: 0, writable: true)
                } catch where error.errno == EACCES {
                    base = try fd.mapShared(length: length, offset: 0, writable: false)
                    writable = false
                }
                files.append(File(device: status.device, inode: status.inode, base: base, length: length, writable: writable, descriptor: fd))
            } catch {
                problems.append("\(error)")
                try? fd.close()
            }
        }
        return problems
    }

    deinit { releaseAll() }
}

/// The client's files by device and inode: the mapping journal records a
/// region by file and offset, and a process that took the session over
/// finds it at its own address in the same file.
extension VFIOUserMemory: HostMemoryFiles {
    func fileLocation(ofHostAddress host: UInt64, size: UInt64) -> FileLocation? {
        for f in files where host >= f.hostAddress && host - f.hostAddress < UInt64(f.length)
            && size <= UInt64(f.length) - (host - f.hostAddress) {
            return FileLocation(device: f.device, inode: f.inode, offset: host - f.hostAddress)
        }
        return nil
    }

    func hostAddress(of location: FileLocation, size: UInt64) -> UInt64? {
        for f in files where f.device == location.device && f.inode == location.inode
            && location.offset < UInt64(f.length) && size <= UInt64(f.length) - location.offset {
            return f.hostAddress + location.offset
        }
        return nil
    }
}
