import Bridge
import VTd
import VTdGuest
import Wire

/// The fuzz targets, by the names their corpus directories and executables use.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case frames = "FuzzFrames"
    case control = "FuzzControl"
    case sync = "FuzzSync"
    case vfioUser = "FuzzVFIOUser"

    /// Runs one input through the target's harness.
    public func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        switch self {
        case .frames: FrameFuzzer.run(data)
        case .control: ControlFuzzer.run(data)
        case .sync: SyncFuzzer.run(data)
        case .vfioUser: VFIOUserFuzzer.run(data)
        }
    }

    public func run(_ bytes: [UInt8]) -> FuzzOutcome { bytes.withUnsafeBytes { run($0) } }

    /// The seed corpus: small, meaningful inputs, by file name.
    public var seeds: [(name: String, bytes: [UInt8])] {
        switch self {
        case .frames: FrameSeeds.all
        case .control: ControlSeeds.all
        case .sync: SyncSeeds.all
        case .vfioUser: VFIOUserSeeds.all
        }
    }
}

// MARK: - Event channel seeds

enum FrameSeeds {
    /// Config byte: fd mode (bits 3-4), assignment (bit 2), payload limit (bits 0-1, 5-7).
    static func input(config: UInt8 = 1, chunks: UInt8 = 0, _ stream: [UInt8]) -> [UInt8] { [config, chunks] + stream }

    static let caps = IOMMUCapabilities.make()
    static let requests: [(String, EventRequest)] = [
        ("hello", .hello(version: 1, flags: 0, cap: caps.cap, ecap: caps.ecap)),
        ("hello-notifier", .hello(version: 1, flags: 1, cap: caps.cap, ecap: caps.ecap)),
        ("set-mem-table", .setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x4000_0000, offset: 0)])),
        ("set-root-table", .setRootTable(0x7ffc000)),
        ("set-translation", .setTranslation(true)),
        ("reset", .reset),
        ("ready", .ready),
        ("invalidate", .invalidate([
            InvalidationWords(low: 0x0000_0003_0000_0031, high: 0), // context-cache, device 00:03.0
            InvalidationWords(low: 0x0000_0000_0001_0032, high: 0x1000), // IOTLB page-selective, DID 1
            InvalidationWords(low: 0x0000_0001_0000_0065, high: 0x1000), // wait
        ])),
        ("notify", .notify([NotifierEntry(iova: 0x1000, translatedAddress: 0x8000, addressMask: 0xfff, sourceID: 0x18, permission: .readWrite),
                            NotifierEntry(iova: 0x20_0000, translatedAddress: 0x40_0000, addressMask: 0x1f_ffff, sourceID: 0x18, permission: [])])),
        ("ping", .ping),
    ]

    static var all: [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        var tag: UInt64 = 1
        var session: [UInt8] = []
        for (name, request) in requests {
            let frame = EventCodec.encodeRequest(request, tag: tag)
            tag += 1
            // SET_MEM_TABLE's one region needs one descriptor: fd mode 1 (every read).
            seeds.append(("request-\(name)", input(config: request.expectedFDCount > 0 ? 0x09 : 0x01, frame)))
            if request.expectedFDCount == 0 { session += frame }
        }
        seeds.append(("session-whole", input(config: 0x01, chunks: 0, session)))
        seeds.append(("session-bytewise", input(config: 0x01, chunks: 1, session)))
        seeds.append(("session-random-fds-last", input(config: 0x19, chunks: 6, session)))
        seeds.append(("session-random-fds-first", input(config: 0x1d, chunks: 4, session)))
        // Refusals.
        let bad: [(String, [UInt8])] = [
            ("hello-version-2", EventCodec.encodeRequest(.hello(version: 2, flags: 0, cap: 0, ecap: 0), tag: 9)),
            ("hello-short", EventCodec.frame(type: 1, tag: 1, payload: [1, 0, 0, 0])),
            ("invalidate-count-mismatch", EventCodec.frame(type: 7, tag: 2, payload: [2, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 16))),
            ("notify-bad-mask", EventCodec.encodeRequest(.notify([NotifierEntry(iova: 0x1000, translatedAddress: 0, addressMask: 0x7ff, sourceID: 0, permission: .read)]), tag: 3)),
            ("mem-table-overlap", EventCodec.encodeRequest(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x2000, offset: 0),
                                                                         MemoryRegionDescriptor(gpa: 0x1000, size: 0x1000, offset: 0)]), tag: 4)),
            ("root-scalable", EventCodec.encodeRequest(.setRootTable(0x1400), tag: 5)),
            ("unknown-type", EventCodec.frame(type: 99, tag: 6, payload: [1, 2, 3])),
            ("ping-with-fd", EventCodec.encodeRequest(.ping, tag: 7)),
        ]
        for (name, frame) in bad { seeds.append(("refused-\(name)", input(config: name.hasSuffix("fd") ? 0x09 : 0x01, frame))) }
        // Too large: a small limit (config 0x40: 48 bytes) and the protocol's.
        seeds.append(("too-large-small-limit", input(config: 0x40, chunks: 2, EventCodec.encodeRequest(.invalidate([InvalidationWords](repeating: InvalidationWords(low: 0x25, high: 0), count: 4)), tag: 1))))
        seeds.append(("too-large-header", input(config: 0x01, chunks: 3, EventCodec.encodeRequest(.ping, tag: 1) + [7, 0, 0, 0, 0x08, 0, 0x10, 0] + [UInt8](repeating: 0, count: 8) + [1, 2, 3])))
        seeds.append(("partial-frame", input(config: 0x01, chunks: 5, Array(EventCodec.encodeRequest(requests[7].1, tag: 1).dropLast(5)))))
        // Replies (the client side's decoder).
        let batch = BatchResultBody(waits: 1, rejectedIndex: -1, maps: 2, unmaps: 1, faults: 1,
                                    failures: [FailureRecord(sourceID: 0x18, operation: 1, errno: 12, iova: 0x1000, size: 0x1000, reason: "ENOMEM")])
        let replies = EventCodec.encodeReply(requestType: 7, tag: 1, EventReply(status: .partial, message: "1 failed", body: .batch(batch)))
            + EventCodec.encodeReply(requestType: 1, tag: 2, .helloAccepted(devices: 2))
            + EventCodec.encodeReply(requestType: 3, tag: 3, EventReply(status: .memory, message: "root table outside RAM"))
        seeds.append(("replies", input(config: 0x01, chunks: 0, replies)))
        return seeds
    }
}

// MARK: - Control socket seeds

enum ControlSeeds {
    static func input(config: UInt8 = 1, chunks: UInt8 = 0, _ text: String) -> [UInt8] { [config, chunks] + Array(text.utf8) }

    static var all: [(name: String, bytes: [UInt8])] {
        let requests: [(String, String)] = [
            ("status", #"{"execute":"status","id":1}"#),
            ("mappings", #"{"execute":"mappings","arguments":{"guest":"00:03.0"},"id":"m-1"}"#),
            ("attach", #"{"execute":"attach","arguments":{"host":"0000:01:00.0","guest":"00:03.0","quota":65535,"return-fd":true},"id":2}"#),
            ("attach-group", #"{"execute":"attach","arguments":{"group":12,"guest":"00:04.0"}}"#),
            ("detach", #"{"execute":"detach","arguments":{"guest":"00:03.0"},"id":null}"#),
            ("replay", #"{"execute":"replay","arguments":{"guest":"00:03.0"},"id":[1,2]}"#),
            ("replay-all", #"{"execute":"replay","arguments":{"all":true},"id":{"n":1}}"#),
            ("metrics", #"{"execute":"metrics"}"#),
            ("log-level", #"{"execute":"log-level","arguments":{"level":"debug"},"id":18446744073709551615}"#),
            ("shutdown", #"{ "execute" : "shutdown" , "id" : -9223372036854775808 }"#),
        ]
        var seeds = requests.map { ("request-\($0.0)", input($0.1 + "\n")) }
        let session = requests.map(\.1).joined(separator: "\r\n") + "\n\n   \n"
        seeds.append(("session-random-chunks", input(chunks: 6, session)))
        seeds.append(("session-bytewise", input(chunks: 1, session)))
        let bad: [(String, String)] = [
            ("not-json", "status please\n"),
            ("array", "[\"execute\",\"status\"]\n"),
            ("missing-execute", #"{"arguments":{},"id":7}"# + "\n"),
            ("extra-member", #"{"execute":"status","argument":{}}"# + "\n"),
            ("execute-not-string", #"{"execute":5}"# + "\n"),
            ("arguments-null", #"{"execute":"status","arguments":null}"# + "\n"),
            ("duplicate-key", #"{"execute":"status","execute":"metrics"}"# + "\n"),
            ("escapes", #"{"execute":"st\u0061tus","id":"\ud83d\ude00\n\t\"\\\/"}"# + "\n"),
            ("lone-surrogate", #"{"execute":"status","id":"\udc00"}"# + "\n"),
            ("numbers", #"{"execute":"attach","arguments":{"quota":1.5e3,"group":-0,"guest":1e400},"id":0.1}"# + "\n"),
            ("big-integer", #"{"execute":"attach","arguments":{"quota":123456789012345678901234567890}}"# + "\n"),
            ("deep", String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "\n"),
            ("unknown-argument", #"{"execute":"detach","arguments":{"guest":"00:03.0","force":true}}"# + "\n"),
            ("reply-return", #"{"return":{"devices":[]},"id":1}"# + "\n"),
            ("reply-error", #"{"error":{"code":"not-attached","message":"no device"},"id":"x"}"# + "\n"),
        ]
        seeds += bad.map { ("refused-\($0.0)", input($0.1)) }
        seeds.append(("not-utf8", [1, 0] + Array(#"{"execute":""#.utf8) + [0xc3, 0x28, 0xed, 0xa0, 0x80] + Array("\"}\n".utf8)))
        seeds.append(("bom", [1, 0] + [0xef, 0xbb, 0xbf] + Array("{\"execute\":\"status\"}\n".utf8)))
        // A small line limit (config 0x40: 64 bytes): the second line is too long.
        seeds.append(("line-too-long", input(config: 0x40, chunks: 3, "{\"execute\":\"status\"}\n" + String(repeating: "x", count: 80) + "\n")))
        seeds.append(("unterminated", input(chunks: 2, "{\"execute\":\"status\"}\n{\"execute\":")))
        return seeds
    }
}

// MARK: - Sync seeds

/// Writes the input format `SyncRun.execute` reads.
public struct SyncProgram {
    public private(set) var bytes: [UInt8] = []

    /// The header. `caps`: two bytes (see `SyncRun.caps`); `host`: IOVA
    /// ranges (bits 0-1), quota index (2-4), failure period index (5-7);
    /// `state`: notifier (bit 0), translation on (1), root set (2), image B
    /// (3), suspended (4), number of devices - 1 (5-6); `walkBudget`: the
    /// product's walk budget per sync, an index (0: the default 4M entries,
    /// 1: the config's minimum, 3: 16384, …).
    init(caps: (UInt8, UInt8) = (0x6c, 0x48), host: UInt8 = 0x0c, state: UInt8 = 0x06, hole: (UInt8, UInt8) = (0, 0),
         walkBudget: UInt8 = 3, sids: [UInt16] = [0x18], rootPage: UInt8 = 1) {
        precondition((1 ... 4).contains(sids.count))
        bytes = [caps.0, caps.1, host, state & 0x9f | UInt8(sids.count - 1) << 5, hole.0, hole.1, walkBudget]
        for sid in sids { bytes += [UInt8(sid & 0xff), UInt8(sid >> 8)] }
        bytes.append(rootPage)
    }

    mutating func u16(_ v: UInt16) { bytes += [UInt8(v & 0xff), UInt8(v >> 8)] }
    mutating func u64(_ v: UInt64) { for i in 0 ..< 8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }

    mutating func poke(page: UInt8, index: Int, words: [UInt64]) {
        precondition((1 ... 32).contains(words.count))
        bytes += [0, page]
        u16(UInt16(index))
        bytes.append(UInt8(words.count - 1))
        for w in words { u64(w) }
    }

    mutating func entry(page: UInt8, index: Int, target: UInt8, low: UInt16, top: UInt8 = 0) {
        bytes += [12, page]
        u16(UInt16(index))
        bytes.append(target)
        u16(low)
        bytes.append(top)
    }

    mutating func batch(_ descriptors: [InvalidationDescriptor]) {
        batch(raw: descriptors.map { $0.encoded })
    }

    mutating func batch(raw: [(low: UInt64, high: UInt64)]) {
        precondition((1 ... 16).contains(raw.count))
        bytes += [1, UInt8(raw.count - 1)]
        for d in raw { u64(d.low); u64(d.high) }
    }

    mutating func composed(_ items: [(kind: UInt8, did: UInt8, addr: UInt8, am: UInt8)]) {
        precondition((1 ... 16).contains(items.count))
        bytes += [2, UInt8(items.count - 1)]
        for i in items { bytes += [i.kind, i.did, i.addr, i.am] }
    }

    mutating func replay(_ device: Int? = nil) { bytes += [3, device.map { UInt8($0) } ?? 0x80] }
    mutating func translation(_ on: Bool) { bytes += [4, on ? 1 : 0] }
    mutating func rootTable(page: UInt8?) { bytes += page.map { [5, 1, $0] } ?? [5, 0] }
    mutating func rootTable(raw: UInt64) { bytes += [5, 3]; u64(raw) }
    mutating func reset() { bytes.append(6) }
    mutating func toggleAttach(_ device: Int) { bytes += [7, UInt8(device)] }
    mutating func hello(caps: (UInt8, UInt8), notifier: Bool) { bytes += [8, caps.0, caps.1, notifier ? 1 : 0] }
    mutating func memory(_ image: Int?) { bytes += [9, image.map { UInt8($0 + 1) } ?? 0] }
    mutating func suspend() { bytes += [10, 1] }
    mutating func ready() { bytes += [10, 0] }
    mutating func vmmGone() { bytes += [10, 2] }

    mutating func notify(_ events: [(device: UInt8, page: UInt8, target: UInt8, shift: UInt8, perm: UInt8)]) {
        precondition((1 ... 16).contains(events.count))
        bytes += [11, UInt8(events.count - 1)]
        for e in events { bytes += [e.device, e.page, e.target, e.shift, e.perm, 0] }
    }
}

/// Region A of the harness's RAM as a writable guest memory of its own, so
/// that the product's guest-side writer (`GuestTableWriter`) lays out the
/// seeds' tables; `flush` turns what it wrote since the last flush into
/// `poke` operations.
final class SeedMemory: GuestMemoryWriter {
    static let pages = Int(SyncWorld.regionA.size >> 12)
    let words = UnsafeMutablePointer<UInt64>.allocate(capacity: SeedMemory.pages * 512)
    var snapshot = [UInt64](repeating: 0, count: SeedMemory.pages * 512)

    init() { words.initialize(repeating: 0, count: Self.pages * 512) }
    deinit { words.deallocate() }

    func tablePage(at gpa: UInt64) -> UnsafePointer<UInt64>? { UnsafePointer(mutableTablePage(at: gpa)) }
    func mutableTablePage(at gpa: UInt64) -> UnsafeMutablePointer<UInt64>? {
        guard gpa & 0xfff == 0, gpa < SyncWorld.regionA.size else { return nil }
        return words + Int(gpa >> 12) * 512
    }

    func flush(into program: inout SyncProgram) {
        for page in 0 ..< Self.pages {
            let base = page * 512
            var k = 0
            while k < 512 {
                guard words[base + k] != snapshot[base + k] else { k += 1; continue }
                let start = k
                var run: [UInt64] = []
                while k < 512, run.count < 32, words[base + k] != snapshot[base + k] {
                    run.append(words[base + k])
                    snapshot[base + k] = words[base + k]
                    k += 1
                }
                program.poke(page: UInt8(page), index: start, words: run)
            }
        }
    }
}

enum SyncSeeds {
    static let sid0: UInt16 = 0x18 // 00:03.0
    static let sid1: UInt16 = 0x20 // 00:04.0
    static let wait = GuestTableWriter<SeedMemory>.wait

    /// A guest writer over `SeedMemory`, tables from page 1 (the root table) up.
    static func guest(_ caps: IOMMUCapabilities) -> (SeedMemory, GuestTableWriter<SeedMemory>) {
        let memory = SeedMemory()
        let writer = try! GuestTableWriter(memory: memory, caps: caps, tableArea: 0x1000 ..< SyncWorld.regionA.size)
        return (memory, writer)
    }

    static let pageB: UInt64 = SyncWorld.regionB.gpa

    static var all: [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        let capBytes: (UInt8, UInt8) = (0x7c, 0x48) // 48-bit, 3/4/5 levels, 2M and 1G, MAMV 18
        let caps = SyncRun.caps(capBytes.0, capBytes.1)

        // 1. A 4-level domain with three 4 KiB pages and a 2 MiB page, as Linux
        //    writes them, then an unmap, a remap elsewhere, and replays.
        func basic(levels: Int, host: UInt8 = 0x0c, state: UInt8 = 0x06) -> [UInt8] {
            var p = SyncProgram(caps: capBytes, host: host, state: state)
            let (memory, w0) = guest(caps)
            var w = w0
            let attach = try! w.attach(SourceID(rawValue: sid0), domain: 1, levels: levels)
            var maps: [InvalidationDescriptor] = []
            maps += try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_0000)
            maps += try! w.map(domain: 1, iova: 0x2000, gpa: pageB + 0x1000, permission: .read)
            maps += try! w.map(domain: 1, iova: 0x7fff_f000, gpa: 0x3_1000)
            maps += try! w.map(domain: 1, iova: 0x4000_0000, gpa: pageB, sizeShift: 21)
            memory.flush(into: &p)
            p.batch(attach + [wait])
            p.batch(maps + [wait])
            p.replay()
            let unmap = try! w.unmap(domain: 1, iova: 0x2000)
            let remap = try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_2000, permission: .read)
            memory.flush(into: &p)
            p.batch(unmap + remap + [wait])
            p.replay(0)
            return p.bytes
        }
        seeds.append(("basic-4-level", basic(levels: 4)))
        seeds.append(("basic-3-level", basic(levels: 3)))
        seeds.append(("basic-5-level", basic(levels: 5)))
        seeds.append(("basic-msi-hole-quota-4", basic(levels: 4, host: 0x01 | 1 << 2)))
        seeds.append(("basic-failures-every-2nd", basic(levels: 4, host: 0x0c | 4 << 5)))
        seeds.append(("basic-image-b-suspended", basic(levels: 4, state: 0x1e)))

        // 2. Two devices: one translated, one pass-through; then the guest
        //    turns translation off and on, moves the root table, resets.
        do {
            var p = SyncProgram(caps: (capBytes.0 | 0x80, capBytes.1), host: 0x0f, hole: (2, 0), sids: [sid0, sid1])
            let (memory, w0) = guest(SyncRun.caps(capBytes.0 | 0x80, capBytes.1))
            var w = w0
            var d = try! w.attach(SourceID(rawValue: sid0), domain: 1)
            d += try! w.attachPassThrough(SourceID(rawValue: sid1), domain: 2)
            d += try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_0000)
            d += try! w.map(domain: 1, iova: 0x3000, gpa: 0x3_1000)
            memory.flush(into: &p)
            p.batch(d + [wait])
            p.translation(false)
            p.translation(true)
            p.memory(1)
            p.rootTable(page: 40)
            p.rootTable(page: 1)
            p.replay()
            p.reset()
            p.rootTable(page: 1)
            p.translation(true)
            p.toggleAttach(1)
            p.toggleAttach(1)
            p.memory(nil)
            p.memory(0)
            seeds.append(("two-devices-pass-through", p.bytes))
        }

        // 3. Notifier mode: the VMM sends mappings; replay; a memory change.
        do {
            var p = SyncProgram(caps: capBytes, state: 0x07, sids: [sid0, sid1])
            p.notify([(0, 1, 48, 0, 3), (0, 2, 64, 9, 1), (1, 1, 49, 0, 2), (0, 8, 50, 1, 3)])
            p.replay()
            p.notify([(0, 1, 48, 0, 0), (0, 2, 64, 9, 0), (1, 0, 0, 52, 3)])
            p.memory(1)
            p.translation(false)
            seeds.append(("notifier-mode", p.bytes))
        }

        // 4. A reconnecting VMM: HELLO (loading: nothing syncs), state, READY.
        do {
            var p = SyncProgram(caps: capBytes)
            let (memory, w0) = guest(caps)
            var w = w0
            var d = try! w.attach(SourceID(rawValue: sid0), domain: 3, levels: 3)
            d += try! w.map(domain: 3, iova: 0x10_0000, gpa: 0x3_8000)
            memory.flush(into: &p)
            p.batch(d + [wait])
            p.hello(caps: (0x44, 0x00), notifier: false)
            p.memory(1)
            p.rootTable(page: 1)
            p.translation(true)
            p.ready()
            p.hello(caps: capBytes, notifier: true)
            p.ready()
            p.hello(caps: capBytes, notifier: false)
            p.ready()
            seeds.append(("reconnect", p.bytes))
        }

        // 4b. A VMM that goes away while loading: it sends another memory
        //     table, moves the root table, turns translation off and adds a
        //     mapping of its own, then disconnects before READY. The last
        //     completed session's state is in force again (its mappings,
        //     into the RAM it named), and a replay while loading that mapped
        //     the unfinished state is undone. A second VMM reconnects with
        //     two HELLOs, re-sends a state and sends READY, then a third
        //     goes away having only said HELLO, and a disconnect with no
        //     session loading changes nothing.
        do {
            var p = SyncProgram(caps: capBytes, sids: [sid0, sid1])
            let (memory, w0) = guest(caps)
            var w = w0
            var d = try! w.attach(SourceID(rawValue: sid0), domain: 1)
            d += try! w.attach(SourceID(rawValue: sid1), domain: 2)
            d += try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_0000)
            d += try! w.map(domain: 1, iova: 0x20_0000, gpa: pageB, sizeShift: 21)
            d += try! w.map(domain: 2, iova: 0x5000, gpa: 0x3_1000, permission: .read)
            memory.flush(into: &p)
            p.batch(d + [wait])
            p.hello(caps: capBytes, notifier: false)
            p.memory(1)
            _ = try! w.map(domain: 1, iova: 0x9000, gpa: 0x3_2000)
            memory.flush(into: &p)
            p.replay(0)
            p.rootTable(page: 40)
            p.translation(false)
            p.vmmGone()
            p.hello(caps: (0x44, 0x00), notifier: false)
            p.hello(caps: capBytes, notifier: false)
            p.memory(1)
            p.rootTable(page: 1)
            p.translation(true)
            p.ready()
            p.hello(caps: capBytes, notifier: true)
            p.memory(nil)
            p.vmmGone()
            p.vmmGone()
            p.replay()
            seeds.append(("abandoned-session", p.bytes))
        }

        // 4c. The same in notifier mode: what was notified before the
        //     unfinished session stands after it, although that session
        //     switched to tables, turned translation off and reset; a device
        //     detached and attached again meanwhile starts with nothing.
        do {
            var p = SyncProgram(caps: capBytes, state: 0x07, sids: [sid0, sid1])
            p.notify([(0, 1, 48, 0, 3), (0, 2, 64, 9, 1), (1, 1, 49, 0, 2)])
            p.hello(caps: capBytes, notifier: true)
            p.memory(1)
            p.translation(false)
            p.vmmGone()
            p.replay()
            p.hello(caps: capBytes, notifier: false)
            p.reset()
            p.toggleAttach(1)
            p.toggleAttach(1)
            p.vmmGone()
            p.replay()
            p.hello(caps: capBytes, notifier: true)
            p.ready()
            p.notify([(1, 3, 50, 0, 3)])
            seeds.append(("abandoned-notifier-session", p.bytes))
        }

        // 5. Hostile tables: a level-2 table whose entries point at itself
        //    (aliasing, within the budget), reserved bits, leaves outside RAM,
        //    a context entry with a reserved AW, a root pointer outside RAM.
        do {
            var p = SyncProgram(caps: capBytes, walkBudget: 2)
            let (memory, w0) = guest(caps)
            var w = w0
            let d = try! w.attach(SourceID(rawValue: sid0), domain: 1, levels: 4)
            _ = try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_0000)
            memory.flush(into: &p)
            // The level-2 table of IOVA 0 is the third table the writer made
            // (root 1, context 2, L4 3, L3 4, L2 5, L1 6): alias it.
            p.entry(page: 5, index: 1, target: 5, low: 3)
            p.entry(page: 5, index: 2, target: 5, low: 3)
            p.entry(page: 6, index: 2, target: 0xff, low: 0x0803) // SNP without snoop control: reserved
            p.entry(page: 6, index: 3, target: 0xff, low: 0xf003, top: 0x10) // beyond RAM
            p.poke(page: 6, index: 4, words: [0x1_0000_0000_0003, 0x7f_ffff_f000_0003])
            p.batch(d + [wait])
            p.entry(page: 2, index: 0x31, target: 0xff, low: 0x0107) // context high: AW 7, DID 1
            p.composed([(0, 0, 0, 0), (9, 0, 0, 0)])
            p.rootTable(raw: 0x1_0000_0000)
            p.rootTable(raw: 0x1400)
            p.rootTable(page: 1)
            p.composed([(2, 1, 0, 0), (5, 1, 1, 0), (5, 1, 0, 0x80 | 9), (5, 1, 0, 63), (8, 0, 0, 0), (10, 0, 0, 0)])
            seeds.append(("hostile-tables", p.bytes))
        }

        // 6. A PDPT whose empty entries all point back at it: the walk of
        //    the low half explodes and the product's walk budget (the
        //    4096 entries here) cuts it; a mapping far above the cut
        //    (PML4 entry 255) stays; page invalidations still work; the
        //    guest fixes the table and a replay converges.
        do {
            var p = SyncProgram(caps: capBytes, walkBudget: 2)
            let (memory, w0) = guest(caps)
            var w = w0
            var d = try! w.attach(SourceID(rawValue: sid0), domain: 1, levels: 4)
            d += try! w.map(domain: 1, iova: 0x1000, gpa: 0x3_0000)
            d += try! w.map(domain: 1, iova: 255 << 39, gpa: 0x3_1000)
            memory.flush(into: &p)
            p.batch(d + [wait])
            // Pages: root 1, context 2, PML4 3, PDPT 4 (of IOVA 0).
            for k in 0 ..< 16 {
                p.poke(page: 4, index: k * 32, words: [UInt64](repeating: 0x4000 | 3, count: 32))
            }
            p.poke(page: 4, index: 0, words: [0x5000 | 3])
            p.replay()
            p.composed([(5, 1, 1, 0), (9, 0, 0, 0)])
            p.batch([w.pageInvalidation(domain: 1, iova: 255 << 39, sizeShift: 12), wait])
            for k in 0 ..< 16 {
                p.poke(page: 4, index: k * 32, words: [UInt64](repeating: 0, count: 32))
            }
            p.poke(page: 4, index: 0, words: [0x5000 | 3])
            p.replay(0)
            seeds.append(("alias-walk-budget", p.bytes))
        }

        // 7. Raw descriptors: every type, reserved bits, a bad granularity.
        do {
            var p = SyncProgram(caps: capBytes)
            let (memory, w0) = guest(caps)
            var w = w0
            var d = try! w.attach(SourceID(rawValue: sid0), domain: 1)
            d += try! w.map(domain: 1, iova: 0, gpa: 0x3_0000)
            memory.flush(into: &p)
            p.batch(raw: [(0x11, 0), (0x0000_0000_0001_0022, 0), (0x0000_0000_0001_0032, 0x1000 | 0x40), (0x3, 0), (0x4, 0), (0x25, 0),
                          (0x0000_0000_0001_0002, 0), (0x0000_0000_0001_0032, 0x800), (0xf, 0), (0x31, 1)])
            p.batch(d + [wait, wait])
            p.composed([(1, 1, 0, 0), (4, 1, 0, 0), (3, 0, 0, 0), (6, 0, 0, 1), (7, 0, 0, 0), (9, 0, 0, 0)])
            seeds.append(("raw-descriptors", p.bytes))
        }
        return seeds
    }
}
