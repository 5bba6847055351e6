import CPosix
import Glibc
import Posix
import VTd

/// What one VFIO container holds, written to a memfd as each MAP_DMA and
/// UNMAP_DMA happens, so that a process started after this one died can
/// know it exactly.
///
/// The type1 interface has no way to list a container's mappings, and a
/// restarted daemon must neither unmap what the guest still uses nor keep
/// a mapping it does not know about. The memfd is handed to systemd's file
/// descriptor store beside the container, so the next process gets both.
///
/// Layout (little-endian 64-bit words; all offsets fixed at creation):
///
///     page 0   header: magic, version, the state word, capacities, the
///              two snapshot counts, the device this container serves
///     A, B     two snapshot areas of `snapshotCapacity` entries of 5 words
///              (iova, size | permission, file device, inode, offset)
///     log      `logCapacity` records of 6 words (operation and outcome,
///              then the five words of an entry)
///
/// The state word holds which snapshot is current and how many log records
/// follow it. The contents are the current snapshot with the log applied in
/// order. Each kernel call is bracketed: its record is written as *pending*
/// and published (state word) before the ioctl, and marked *done* or
/// *failed* after it returns. A process killed anywhere leaves at most one
/// pending record, the last, whose outcome is unknown; `recover` settles it
/// without guessing (see there). When the log is full it is folded into the
/// other snapshot area, which then becomes current with one store.
///
/// Ordering: the process dies at an instruction boundary and the memfd's
/// pages outlive it, so every store that happened is seen by the next
/// process. Release stores (`cposix_store_release_u64`) keep the compiler
/// and CPU from publishing a count before the words it counts.
public final class MappingJournal {
    /// What the journal is about, checked when a process adopts it.
    public struct Owner: Sendable, Equatable, CustomStringConvertible {
        /// The guest source-id the container serves.
        public var sourceID: SourceID
        /// The host device, as the operator named it ("0000:01:00.0", "group:12").
        public var host: String

        public init(sourceID: SourceID, host: String) {
            self.sourceID = sourceID
            self.host = host
        }

        public var description: String { "\(sourceID) on \(host)" }
    }

    /// One mapping the kernel holds.
    public struct Entry: Sendable, Equatable {
        public var iova: UInt64
        public var size: UInt64
        public var permission: DMAPermission
        public var location: FileLocation

        public init(iova: UInt64, size: UInt64, permission: DMAPermission, location: FileLocation) {
            self.iova = iova
            self.size = size
            self.permission = permission
            self.location = location
        }

        public var end: UInt64 { iova &+ size }
    }

    public enum Operation: UInt64, Sendable {
        case map = 1
        case unmap = 2
        case unmapAll = 3
    }

    /// A call whose record was published but whose outcome was not: the
    /// process died between publishing it and marking it.
    public struct Unsettled: Sendable, Equatable, CustomStringConvertible {
        public var operation: Operation
        public var iova: UInt64
        public var size: UInt64

        public var description: String {
            switch operation {
            case .map: "MAP_DMA iova 0x\(String(iova, radix: 16)) size 0x\(String(size, radix: 16))"
            case .unmap: "UNMAP_DMA iova 0x\(String(iova, radix: 16)) size 0x\(String(size, radix: 16))"
            case .unmapAll: "UNMAP_DMA of everything"
            }
        }
    }

    public struct Error: Swift.Error, Sendable, CustomStringConvertible {
        public var description: String
        init(_ text: String) { description = text }
    }

    /// The memfd, for the fd store.
    public let file: FileDescriptor
    public let owner: Owner
    public let snapshotCapacity: Int
    public let logCapacity: Int
    private let base: UnsafeMutableRawPointer
    private let length: Int
    /// Log records written since the current snapshot (mirrors the state word).
    private var logCount: Int
    private var active: Int
    /// Set when the journal could not record a call (full beyond repair):
    /// the header is invalidated, so a later process treats the container
    /// as unknown and empties it rather than trust a partial record.
    public private(set) var broken: String?

    static let magic: UInt64 = 0x314C_4E52_4A44_5456 // "VTDJRNL1"
    static let version: UInt64 = 1
    static let headerSize = 4096
    static let entryWords = 5
    static let recordWords = 6
    static let hostTextBytes = 256

    private enum Word: Int {
        case magic = 0, version, state, snapshotCapacity, logCapacity, count0, count1, sourceID, hostLength
    }
    private static let hostTextOffset = 128

    private enum Outcome: UInt64 {
        case pending = 0, done = 1, failed = 2
    }

    private init(file: FileDescriptor, base: UnsafeMutableRawPointer, length: Int, owner: Owner,
                 snapshotCapacity: Int, logCapacity: Int, logCount: Int, active: Int) {
        self.file = file
        self.base = base
        self.length = length
        self.owner = owner
        self.snapshotCapacity = snapshotCapacity
        self.logCapacity = logCapacity
        self.logCount = logCount
        self.active = active
    }

    deinit { try? SharedMapping.unmap(base, length: length) }

    static func byteLength(snapshotCapacity: Int, logCapacity: Int) -> Int {
        headerSize + 2 * snapshotCapacity * entryWords * 8 + logCapacity * recordWords * 8
    }

    /// A new, empty journal in a new memfd. The file is sparse: only the
    /// pages written cost memory.
    public static func create(owner: Owner, snapshotCapacity: Int, logCapacity: Int = 65536) throws(SystemError) -> MappingJournal {
        precondition(snapshotCapacity > 0 && logCapacity > 0)
        let length = byteLength(snapshotCapacity: snapshotCapacity, logCapacity: logCapacity)
        let file = try FileDescriptor.memoryFile(name: "vtd-bridge journal \(owner.sourceID)", size: UInt64(length))
        let base = try file.mapShared(length: length, offset: 0, writable: true)
        let journal = MappingJournal(file: file, base: base, length: length, owner: owner,
                                     snapshotCapacity: snapshotCapacity, logCapacity: logCapacity, logCount: 0, active: 0)
        journal.set(.version, version)
        journal.set(.snapshotCapacity, UInt64(snapshotCapacity))
        journal.set(.logCapacity, UInt64(logCapacity))
        journal.set(.sourceID, UInt64(owner.sourceID.rawValue))
        let host = Array(owner.host.utf8.prefix(hostTextBytes))
        host.withUnsafeBytes { (base + hostTextOffset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        journal.set(.hostLength, UInt64(host.count))
        journal.set(.state, 0)
        // The magic last: a file with it is complete.
        journal.publish(.magic, magic)
        return journal
    }

    /// Opens the journal a previous process left in `file` (from the fd
    /// store). Checks what can be checked: magic, version, sizes against
    /// the file's, counts against capacities.
    public static func adopt(_ file: FileDescriptor) throws(Error) -> MappingJournal {
        let size: Int64
        do { size = try file.status().size } catch { throw Error("fstat of the journal memfd: \(error)") }
        guard size >= headerSize else { throw Error("the journal memfd is \(size) bytes, shorter than its header") }
        let head: UnsafeMutableRawPointer
        do { head = try file.mapShared(length: headerSize, offset: 0, writable: false) } catch {
            throw Error("mapping the journal header: \(error)")
        }
        let words = head.assumingMemoryBound(to: UInt64.self)
        let (magicWord, versionWord) = (words[Word.magic.rawValue], words[Word.version.rawValue])
        let snapshotCapacity = Int(truncatingIfNeeded: words[Word.snapshotCapacity.rawValue])
        let logCapacity = Int(truncatingIfNeeded: words[Word.logCapacity.rawValue])
        try? SharedMapping.unmap(head, length: headerSize)
        guard magicWord == magic else {
            throw Error("the journal memfd has no valid header (magic 0x\(String(magicWord, radix: 16))): it was never completed or was invalidated")
        }
        guard versionWord == version else {
            throw Error("journal version \(versionWord), this build reads version \(version)")
        }
        guard snapshotCapacity > 0, logCapacity > 0, snapshotCapacity < 1 << 32, logCapacity < 1 << 32,
              byteLength(snapshotCapacity: snapshotCapacity, logCapacity: logCapacity) <= size else {
            throw Error("journal capacities \(snapshotCapacity)/\(logCapacity) do not fit its \(size)-byte file")
        }
        let length = byteLength(snapshotCapacity: snapshotCapacity, logCapacity: logCapacity)
        let base: UnsafeMutableRawPointer
        do { base = try file.mapShared(length: length, offset: 0, writable: true) } catch {
            throw Error("mapping the journal: \(error)")
        }
        let w = base.assumingMemoryBound(to: UInt64.self)
        let state = cposix_load_acquire_u64(w + Word.state.rawValue)
        let active = Int((state >> 32) & 1)
        let logCount = Int(state & 0xffff_ffff)
        let hostLength = min(Int(truncatingIfNeeded: w[Word.hostLength.rawValue]), hostTextBytes)
        let host = String(decoding: UnsafeRawBufferPointer(start: base + hostTextOffset, count: hostLength), as: UTF8.self)
        let count = Int(truncatingIfNeeded: w[active == 0 ? Word.count0.rawValue : Word.count1.rawValue])
        guard logCount <= logCapacity, count >= 0, count <= snapshotCapacity else {
            try? SharedMapping.unmap(base, length: length)
            throw Error("journal counts out of range: \(count) entries, \(logCount) log records")
        }
        let owner = Owner(sourceID: SourceID(rawValue: UInt16(truncatingIfNeeded: w[Word.sourceID.rawValue])), host: host)
        return MappingJournal(file: file, base: base, length: length, owner: owner, snapshotCapacity: snapshotCapacity,
                              logCapacity: logCapacity, logCount: logCount, active: active)
    }

    // MARK: words

    private var words: UnsafeMutablePointer<UInt64> { base.assumingMemoryBound(to: UInt64.self) }

    private func set(_ word: Word, _ value: UInt64) { words[word.rawValue] = value }

    private func publish(_ word: Word, _ value: UInt64) {
        cposix_store_release_u64(words + word.rawValue, value)
    }

    private func snapshot(_ area: Int) -> UnsafeMutablePointer<UInt64> {
        (base + Self.headerSize).assumingMemoryBound(to: UInt64.self) + area * snapshotCapacity * Self.entryWords
    }

    private var log: UnsafeMutablePointer<UInt64> {
        (base + Self.headerSize).assumingMemoryBound(to: UInt64.self) + 2 * snapshotCapacity * Self.entryWords
    }

    private func publishState() {
        publish(.state, UInt64(active) << 32 | UInt64(logCount))
    }

    // MARK: recording (the hot path: a few stores around each ioctl)

    /// Records that `operation` is about to be issued; returns the record to
    /// pass to `finish`, or nil when nothing can be recorded (`broken`).
    public func begin(_ operation: Operation, iova: UInt64, size: UInt64, permission: DMAPermission = [],
                      location: FileLocation = .unknown) -> Int? {
        guard broken == nil else { return nil }
        if logCount == logCapacity {
            compact()
            guard broken == nil else { return nil }
        }
        let r = log + logCount * Self.recordWords
        r[1] = iova
        r[2] = size | UInt64(permission.rawValue)
        r[3] = location.device
        r[4] = location.inode
        r[5] = location.offset
        r[0] = operation.rawValue | Outcome.pending.rawValue << 8
        let index = logCount
        logCount += 1
        publishState()
        return index
    }

    /// Records the kernel's answer to the call `begin` returned `record` for.
    public func finish(_ record: Int?, succeeded: Bool) {
        guard let record, broken == nil else { return }
        let r = log + record * Self.recordWords
        let operation = r[0] & 0xff
        cposix_store_release_u64(r, operation | (succeeded ? Outcome.done : Outcome.failed).rawValue << 8)
    }

    // MARK: reading back

    /// The mappings recorded, and the one call whose outcome is unknown.
    public func contents() -> (entries: [Entry], unsettled: Unsettled?) {
        var byIOVA: [UInt64: Entry] = [:]
        let s = snapshot(active)
        let count = Int(truncatingIfNeeded: words[active == 0 ? Word.count0.rawValue : Word.count1.rawValue])
        byIOVA.reserveCapacity(count)
        for i in 0..<min(count, snapshotCapacity) {
            let e = s + i * Self.entryWords
            let entry = Self.entry(e)
            byIOVA[entry.iova] = entry
        }
        var unsettled: Unsettled?
        for i in 0..<logCount {
            let r = log + i * Self.recordWords
            let head = r[0]
            guard let operation = Operation(rawValue: head & 0xff) else { continue }
            let outcome = Outcome(rawValue: (head >> 8) & 0xff) ?? .failed
            let entry = Self.entry(r + 1)
            switch outcome {
            case .failed:
                continue
            case .pending:
                // Only the last record can be pending: every earlier call
                // returned and was marked before the next one began.
                unsettled = Unsettled(operation: operation, iova: entry.iova, size: entry.size)
                continue
            case .done:
                break
            }
            switch operation {
            case .map:
                byIOVA[entry.iova] = entry
            case .unmap:
                // The bridge unmaps whole entries, so the exact key is the
                // rule; a range over several is searched for.
                if let e = byIOVA[entry.iova], e.size == entry.size {
                    byIOVA.removeValue(forKey: entry.iova)
                } else {
                    let end = entry.end
                    for (iova, e) in byIOVA where iova < end && e.end > entry.iova { byIOVA.removeValue(forKey: iova) }
                }
            case .unmapAll:
                byIOVA.removeAll()
            }
        }
        return (byIOVA.values.sorted { $0.iova < $1.iova }, unsettled)
    }

    private static func entry(_ e: UnsafeMutablePointer<UInt64>) -> Entry {
        Entry(iova: e[0], size: e[1] & ~0xfff, permission: DMAPermission(rawValue: UInt8(e[1] & 3)),
              location: FileLocation(device: e[2], inode: e[3], offset: e[4]))
    }

    /// Replaces the contents with `entries`: written to the other snapshot
    /// area, which becomes current (with an empty log) in one store. A
    /// process killed half-way leaves the old snapshot and log current.
    public func rewrite(_ entries: [Entry]) {
        guard broken == nil else { return }
        guard entries.count <= snapshotCapacity else {
            invalidate("\(entries.count) mappings do not fit the journal's \(snapshotCapacity) entries")
            return
        }
        let target = 1 - active
        let s = snapshot(target)
        for (i, entry) in entries.enumerated() {
            let e = s + i * Self.entryWords
            e[0] = entry.iova
            e[1] = entry.size | UInt64(entry.permission.rawValue)
            e[2] = entry.location.device
            e[3] = entry.location.inode
            e[4] = entry.location.offset
        }
        publish(target == 0 ? .count0 : .count1, UInt64(entries.count))
        let retired = 1 - target
        let hadLog = logCount > 0
        active = target
        logCount = 0
        publishState()
        releasePages(area: retired, log: hadLog)
    }

    /// Gives the pages of what the state word no longer points at back to
    /// the kernel: the snapshot area just retired and, if it held records,
    /// the log. A memfd is shmem, so every page once written stays resident
    /// (counted in the daemon's RssShmem) until it is punched out: without
    /// this a journal that once held 1M mappings, or whose 3 MiB log once
    /// filled, would keep that memory for the rest of its life. Only whole
    /// pages inside each range are punched, so a page shared with the
    /// current snapshot is kept. Runs after the state store: a process
    /// killed before or during the punch leaves a journal whose current
    /// snapshot and (empty) log are untouched. One syscall per range, at a
    /// rewrite (a sync, or once per `logCapacity` records), never per call.
    private func releasePages(area: Int, log punchLog: Bool) {
        let areaBytes = snapshotCapacity * Self.entryWords * 8
        let areaStart = Self.headerSize + area * areaBytes
        punch(from: areaStart, to: areaStart + areaBytes)
        if punchLog {
            punch(from: Self.headerSize + 2 * areaBytes, to: length)
        }
    }

    /// Punches the whole pages of [start, end) of the memfd. A failure
    /// (fallocate refused by the file system) costs memory, not
    /// correctness: the range is no longer referenced either way.
    private func punch(from start: Int, to end: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (start + page - 1) / page * page
        let last = end / page * page
        guard last > first else { return }
        try? file.punchHole(offset: UInt64(first), length: UInt64(last - first))
    }

    /// Folds the log into a snapshot. Called when the log is full; a record
    /// pending at that point cannot exist (each call is finished first).
    private func compact() {
        rewrite(contents().entries)
    }

    /// Marks the journal unusable, for this process and the next: the next
    /// one finds no magic and empties the container instead of trusting it.
    public func invalidate(_ why: String) {
        broken = why
        publish(.magic, 0)
    }
}
