import Bridge
import Posix
import VTd
import VTdBridgeTestSupport
import VTdGuest
import XCTest

/// The mapping journal: what a container holds, read back by a process that
/// did not make the calls. A "restart" here is what the next process sees:
/// the same memfd adopted anew (`MappingJournal.adopt`), the same kernel
/// (the recording double keeps its mappings), and guest RAM mapped again at
/// new host addresses from the same file.
final class MappingJournalTests: XCTestCase {
    let sid = SourceID("00:03.0")!
    let owner = MappingJournal.Owner(sourceID: SourceID("00:03.0")!, host: "0000:01:00.0")
    let file = FileLocation(device: 7, inode: 42, offset: 0)

    func location(_ offset: UInt64) -> FileLocation { FileLocation(device: 7, inode: 42, offset: offset) }

    /// The next process's view of `journal`'s memfd.
    func reopen(_ journal: MappingJournal) throws -> MappingJournal {
        try MappingJournal.adopt(try journal.file.duplicate())
    }

    func testEveryCallIsReadBackByTheNextProcess() throws {
        let kernel = RecordingBackend()
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 64)
        let backend = JournaledBackend(inner: kernel, journal: journal)
        try backend.map(iova: 0x1000, size: 0x1000, hostAddress: 0x7000_0000, permission: .readWrite)
        try backend.map(iova: 0x20_0000, size: 0x20_0000, hostAddress: 0x7100_0000, permission: .read)
        try backend.map(iova: 0x5000, size: 0x1000, hostAddress: 0x7000_1000, permission: .write)
        try backend.unmap(iova: 0x1000, size: 0x1000)

        let next = try reopen(journal)
        XCTAssertEqual(next.owner, owner)
        let (entries, unsettled) = next.contents()
        XCTAssertNil(unsettled)
        XCTAssertEqual(entries.map(\.iova), kernel.mappings.keys.sorted())
        XCTAssertEqual(entries.map(\.size), [0x1000, 0x20_0000])
        XCTAssertEqual(entries.map(\.permission), [.write, .read])
        // No file was known for these host addresses: never taken for current.
        XCTAssertEqual(entries.map(\.location), [.unknown, .unknown])
    }

    func testAFailedCallChangesNothingInTheRecord() throws {
        let kernel = RecordingBackend()
        kernel.inject = { call in if case .map(0x3000, _, _, _) = call { return ENOMEM } else { return nil } }
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 64)
        let backend = JournaledBackend(inner: kernel, journal: journal)
        try backend.map(iova: 0x1000, size: 0x1000, hostAddress: 0x7000_0000, permission: .readWrite)
        XCTAssertThrowsError(try backend.map(iova: 0x3000, size: 0x1000, hostAddress: 0x7000_2000, permission: .readWrite))
        XCTAssertThrowsError(try backend.unmap(iova: 0x9000, size: 0x1000), "nothing there: the double refuses")
        let (entries, unsettled) = try reopen(journal).contents()
        XCTAssertNil(unsettled)
        XCTAssertEqual(entries.map(\.iova), [0x1000])
    }

    /// A process killed between publishing a call and learning its outcome:
    /// for each kind of call, whether the kernel did it or not, recovery
    /// leaves the record equal to the kernel, by unmapping, never by guessing.
    func testACallWithoutAnOutcomeIsSettledByUnmappingItsRange() throws {
        for operation in [MappingJournal.Operation.map, .unmap, .unmapAll] {
            for kernelDidIt in [false, true] {
                let kernel = RecordingBackend()
                let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 64)
                let backend = JournaledBackend(inner: kernel, journal: journal)
                try backend.map(iova: 0x1000, size: 0x1000, hostAddress: 0x7000_0000, permission: .readWrite)
                try backend.map(iova: 0x2000, size: 0x1000, hostAddress: 0x7000_1000, permission: .readWrite)
                // The dying process: the record is published, the kernel
                // maybe did the call, the outcome was never written.
                switch operation {
                case .map:
                    _ = journal.begin(.map, iova: 0x8000, size: 0x2000, permission: .read, location: location(0x8000))
                    if kernelDidIt { try kernel.map(iova: 0x8000, size: 0x2000, hostAddress: 0x7000_8000, permission: .read) }
                case .unmap:
                    _ = journal.begin(.unmap, iova: 0x2000, size: 0x1000)
                    if kernelDidIt { try kernel.unmap(iova: 0x2000, size: 0x1000) }
                case .unmapAll:
                    _ = journal.begin(.unmapAll, iova: 0, size: 0)
                    if kernelDidIt { try kernel.unmapAll() }
                }
                kernel.clearCalls()

                let next = try reopen(journal)
                let recovered = try JournaledBackend(inner: kernel, journal: next).recover()
                let what = "\(operation), kernel did it: \(kernelDidIt)"
                XCTAssertEqual(recovered.settled?.operation, operation, what)
                XCTAssertEqual(recovered.calls, 1, what)
                XCTAssertEqual(recovered.entries.map(\.iova), kernel.mappings.keys.sorted(), what)
                switch operation {
                case .map:
                    XCTAssertEqual(kernel.calls, [.unmap(iova: 0x8000, size: 0x2000)], what)
                    XCTAssertEqual(recovered.entries.map(\.iova), [0x1000, 0x2000], what)
                case .unmap:
                    XCTAssertEqual(kernel.calls, [.unmap(iova: 0x2000, size: 0x1000)], what)
                    XCTAssertEqual(recovered.entries.map(\.iova), [0x1000], what)
                case .unmapAll:
                    XCTAssertEqual(kernel.calls, [.unmapAll], what)
                    XCTAssertEqual(recovered.entries, [], what)
                }
                // Settled for good: a third process finds nothing to settle.
                let third = try JournaledBackend(inner: kernel, journal: try reopen(next)).recover()
                XCTAssertNil(third.settled, what)
                XCTAssertEqual(third.entries, recovered.entries, what)
            }
        }
    }

    func testAFullLogIsFoldedIntoASnapshotAndNothingIsLost() throws {
        let kernel = RecordingBackend()
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 512, logCapacity: 16)
        let backend = JournaledBackend(inner: kernel, journal: journal)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let page = rng.next() % 256
            let iova = 0x10_0000 + page * 0x1000
            if kernel.mappings[iova] != nil {
                try backend.unmap(iova: iova, size: 0x1000)
            } else {
                try backend.map(iova: iova, size: 0x1000, hostAddress: 0x7000_0000 + page * 0x1000, permission: .readWrite)
            }
            if rng.next() % 97 == 0 {
                XCTAssertEqual(try reopen(journal).contents().entries.map(\.iova), kernel.mappings.keys.sorted())
            }
        }
        XCTAssertEqual(try reopen(journal).contents().entries.map(\.iova), kernel.mappings.keys.sorted())
    }

    /// The bytes of the memfd in [start, end).
    func bytes(_ journal: MappingJournal, from start: Int, to end: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0xAA, count: end - start)
        let read = try buffer.withUnsafeMutableBytes { try journal.file.read(at: Int64(start), into: $0) }
        XCTAssertEqual(read, end - start)
        return buffer
    }

    func testARetiredSnapshotAreaAndAFoldedLogGiveTheirPagesBack() throws {
        // Areas of 40,000 B (1000 × 40) at 4096 and 44096, the log (256 ×
        // 48 B) at 84096: no area starts or ends on a page boundary, so the
        // punch must keep the pages each shares with a neighbour.
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 1000, logCapacity: 256)
        let areaA = 4096, areaB = 44096, logStart = 84096, logEnd = logStart + 256 * 48
        func roundUp(_ x: Int) -> Int { (x + 4095) / 4096 * 4096 }
        func roundDown(_ x: Int) -> Int { x / 4096 * 4096 }
        func zeros(_ start: Int, _ end: Int) -> [UInt8] { [UInt8](repeating: 0, count: end - start) }
        let many = (0..<1000).map { i in
            MappingJournal.Entry(iova: 0x10_0000 + UInt64(i) * 0x1000, size: 0x1000, permission: .readWrite,
                                 location: location(UInt64(i) * 0x1000))
        }
        journal.rewrite(many)  // into area B
        let full = try journal.file.status().allocatedBytes
        XCTAssertGreaterThanOrEqual(full, Int64(1000 * 40))

        journal.rewrite(Array(many.prefix(3)))  // into area A; B is retired
        let after = try journal.file.status().allocatedBytes
        // B's nine whole pages go; A's first page is written.
        XCTAssertLessThanOrEqual(after, full - Int64(32 << 10))
        XCTAssertEqual(try bytes(journal, from: roundUp(areaB), to: roundDown(logStart)), zeros(roundUp(areaB), roundDown(logStart)))
        XCTAssertEqual(try reopen(journal).contents().entries, Array(many.prefix(3)))

        // Fill the log with one page mapped and unmapped in turn; the next
        // record folds it (3 mappings) into area B and starts the log again.
        let page: UInt64 = 0x4000_0000
        for i in 0..<256 {
            let record = i % 2 == 0
                ? journal.begin(.map, iova: page, size: 0x1000, permission: .read, location: location(0))
                : journal.begin(.unmap, iova: page, size: 0x1000)
            journal.finish(record, succeeded: true)
        }
        let logFull = try journal.file.status().allocatedBytes
        journal.finish(journal.begin(.map, iova: page, size: 0x1000, permission: .read, location: location(0)), succeeded: true)
        XCTAssertNil(journal.broken)
        // The log's two whole pages and area A's (retired) one page go.
        XCTAssertLessThanOrEqual(try journal.file.status().allocatedBytes, logFull - Int64(8 << 10))
        XCTAssertEqual(try bytes(journal, from: roundUp(logStart), to: roundDown(logEnd)), zeros(roundUp(logStart), roundDown(logEnd)))
        XCTAssertEqual(try bytes(journal, from: areaA, to: roundDown(areaB)), zeros(areaA, roundDown(areaB)))
        XCTAssertEqual(try reopen(journal).contents().entries.map(\.iova), many.prefix(3).map(\.iova) + [page])
    }

    func testTheRecordIsRefusedWhenItsHeaderIsNotComplete() throws {
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 8)
        journal.invalidate("test")
        XCTAssertThrowsError(try reopen(journal)) { XCTAssertTrue("\($0)".contains("no valid header"), "\($0)") }
        let empty = try FileDescriptor.memoryFile(name: "not a journal", size: 4096)
        XCTAssertThrowsError(try MappingJournal.adopt(empty))
        let short = try FileDescriptor.memoryFile(name: "short", size: 100)
        XCTAssertThrowsError(try MappingJournal.adopt(short)) { XCTAssertTrue("\($0)".contains("shorter"), "\($0)") }
    }

    func testAFullJournalStopsRecordingAndInvalidatesItself() throws {
        let kernel = RecordingBackend()
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 2, logCapacity: 4)
        let backend = JournaledBackend(inner: kernel, journal: journal)
        for i in 0..<3 {
            try backend.map(iova: UInt64(i + 1) * 0x1000, size: 0x1000, hostAddress: 0x7000_0000, permission: .read)
        }
        try backend.map(iova: 0x10000, size: 0x1000, hostAddress: 0x7000_0000, permission: .read)
        try backend.map(iova: 0x11000, size: 0x1000, hostAddress: 0x7000_0000, permission: .read)
        XCTAssertNotNil(journal.broken, "5 mappings cannot fold into 2 entries")
        XCTAssertThrowsError(try reopen(journal), "the next process must not trust a partial record")
    }

    /// The whole restart in the bridge: a guest with mappings, a new process
    /// adopts the container with guest RAM mapped at new host addresses, the
    /// reconnecting VMM re-sends its state, and READY's sync over unchanged
    /// tables makes no call. A page the guest unmapped during the outage is
    /// unmapped exactly, and only then.
    func testARestartedBridgeResyncsUnchangedTablesWithNoCall() throws {
        let ramSize: UInt64 = 64 << 20
        let ramFile = try FileDescriptor.memoryFile(name: "guest RAM", size: ramSize)
        let caps = IOMMUCapabilities.make()
        func ram() throws -> GuestRAM {
            try GuestRAM([GuestRAMRegionSpec(gpa: 0, size: ramSize, backing: .fileDescriptor(ramFile, offset: 0))])
        }
        let firstRAM = try ram()
        var writer = try GuestTableWriter(memory: firstRAM, caps: caps, tableArea: (ramSize - (8 << 20))..<ramSize)
        let kernel = RecordingBackend()

        // The first process.
        let first = try GuestIOMMU(caps: caps, logger: GuestFixture.quietLogger)
        _ = first.setMemory(firstRAM)
        _ = first.setRootTable(writer.rootTable)
        _ = first.setTranslationEnabled(true)
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 1024)
        let firstBackend = JournaledBackend(inner: kernel, journal: journal)
        firstBackend.files = firstRAM
        try first.attach(sid, backend: firstBackend)
        var batch = try writer.attach(sid, domain: 1)
        for page in 0..<40 as Range<UInt64> {
            batch += try writer.map(domain: 1, iova: 0x10_0000 + page * 0x1000, gpa: 0x40_0000 + page * 0x1000)
        }
        batch += try writer.map(domain: 1, iova: 0x4000_0000, gpa: 0x20_0000, sizeShift: 21, permission: .read)
        XCTAssertEqual(first.process(batch + [GuestTableWriter<GuestRAM>.wait]).report.failures, [])
        XCTAssertEqual(kernel.mappings.count, 41)
        // Recorded by file: RAM is the file from offset 0, so offset == GPA.
        let recorded = try reopen(journal).contents().entries
        XCTAssertEqual(recorded.first?.location.offset, 0x40_0000)
        XCTAssertEqual(recorded.last?.location.offset, 0x20_0000)
        XCTAssertTrue(recorded.allSatisfy(\.location.isKnown))

        // The process dies. During the outage the guest unmaps one page and
        // queues its invalidation, which nobody acknowledges.
        let invalidation = try writer.unmap(domain: 1, iova: 0x10_5000)

        // The next process: the same kernel, the journal adopted, guest RAM
        // mapped anew (different host addresses).
        kernel.clearCalls()
        let second = try GuestIOMMU(caps: caps, logger: GuestFixture.quietLogger)
        second.suspendSync()
        let recovery = try JournaledBackend(inner: kernel, journal: try reopen(journal)).recover()
        XCTAssertEqual(recovery.entries.count, 41)
        XCTAssertNil(recovery.settled)
        let secondBackend = JournaledBackend(inner: kernel, journal: try reopen(journal))
        try second.attach(sid, backend: secondBackend, adopting: recovery.entries)
        XCTAssertEqual(kernel.calls, [], "adopting makes no call")
        // An operator's replay before the VMM is back changes nothing.
        XCTAssertEqual(try second.replay(sid).ioctls, 0)
        XCTAssertEqual(try second.replay().ioctls, 0)
        XCTAssertEqual(kernel.calls, [])
        XCTAssertEqual(second.spaces[sid]!.shadow.count, 41)
        XCTAssertEqual(second.spaces[sid]!.unresolvedAdopted.count, 41, "no guest RAM yet")

        // The VMM reconnects: HELLO (suspends), its memory table, its
        // registers, READY.
        let secondRAM = try ram()
        secondBackend.files = secondRAM
        XCTAssertNotEqual(secondRAM.hostAddress(gpa: 0, size: 4096), firstRAM.hostAddress(gpa: 0, size: 4096))
        XCTAssertEqual(second.setMemory(secondRAM).ioctls, 0)
        XCTAssertEqual(second.spaces[sid]!.unresolvedAdopted.count, 0, "every adopted mapping found its file")
        _ = second.setRootTable(writer.rootTable)
        _ = second.setTranslationEnabled(true)
        XCTAssertEqual(kernel.calls, [])
        let ready = second.resumeSync()
        // The only call: the page the guest unmapped during the outage.
        XCTAssertEqual(kernel.calls, [.unmap(iova: 0x10_5000, size: 0x1000)])
        XCTAssertEqual(ready.ioctls, 1)
        // Its invalidation, delivered after READY, finds nothing left to do.
        kernel.clearCalls()
        _ = second.process(invalidation + [GuestTableWriter<GuestRAM>.wait])
        XCTAssertEqual(kernel.calls, [])
        // And a replay of the unchanged tables makes no call at all.
        XCTAssertEqual(try second.replay(sid).ioctls, 0)
        XCTAssertEqual(second.spaces[sid]!.shadow.entries.map(\.iova), kernel.mappings.keys.sorted())
        // The shadow names the new host addresses of the same file pages.
        for entry in second.spaces[sid]!.shadow.entries {
            let old = kernel.mappings[entry.iova]!.hostAddress
            XCTAssertEqual(secondRAM.fileLocation(ofHostAddress: entry.hostAddress, size: entry.size),
                           firstRAM.fileLocation(ofHostAddress: old, size: entry.size))
        }
        withExtendedLifetime(firstRAM) {}
    }

    /// A mapping whose file is not in the new memory table (the VMM changed
    /// its RAM) is never taken for current: READY replaces it exactly.
    func testAnAdoptedMappingOfAnotherFileIsReplaced() throws {
        let kernel = RecordingBackend()
        try kernel.map(iova: 0x1000, size: 0x1000, hostAddress: 0x7000_0000, permission: .readWrite)
        let entries = [MappingJournal.Entry(iova: 0x1000, size: 0x1000, permission: .readWrite, location: location(0))]
        let guest = try GuestFixture()
        let bridge = try GuestIOMMU(caps: guest.caps, logger: GuestFixture.quietLogger)
        bridge.suspendSync()
        try bridge.attach(sid, backend: kernel, adopting: entries)
        kernel.clearCalls()
        _ = bridge.setMemory(guest.memory)
        XCTAssertEqual(bridge.spaces[sid]!.unresolvedAdopted.count, 1)
        _ = bridge.setRootTable(guest.writer.rootTable)
        _ = bridge.setTranslationEnabled(true)
        var writer = guest.writer
        _ = try writer.attach(sid, domain: 1)
        _ = try writer.map(domain: 1, iova: 0x1000, gpa: 0x10000)
        _ = bridge.resumeSync()
        XCTAssertEqual(kernel.calls, [.unmap(iova: 0x1000, size: 0x1000),
                                      .map(iova: 0x1000, size: 0x1000, hostAddress: guest.memory.hostAddress(gpa: 0x10000, size: 4096)!, permission: .readWrite)])
        XCTAssertEqual(bridge.spaces[sid]!.unresolvedAdopted.count, 0)
    }

    func testARecordThatOverlapsItselfIsNotTrusted() throws {
        let kernel = RecordingBackend()
        try kernel.map(iova: 0x1000, size: 0x2000, hostAddress: 0x7000_0000, permission: .readWrite)
        let journal = try MappingJournal.create(owner: owner, snapshotCapacity: 8)
        journal.rewrite([MappingJournal.Entry(iova: 0x1000, size: 0x2000, permission: .readWrite, location: file),
                         MappingJournal.Entry(iova: 0x2000, size: 0x1000, permission: .readWrite, location: file)])
        kernel.clearCalls()
        let recovery = try JournaledBackend(inner: kernel, journal: try reopen(journal)).recover()
        XCTAssertNotNil(recovery.distrusted)
        XCTAssertEqual(recovery.entries, [])
        XCTAssertEqual(kernel.calls, [.unmapAll])
        XCTAssertEqual(kernel.mappings.count, 0)
    }
}
