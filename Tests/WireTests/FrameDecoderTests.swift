@testable import Wire
import VTdGuest
import XCTest

final class FrameDecoderTests: XCTestCase {
    /// A mixed stream: every request type, some frames with descriptors.
    struct Stream {
        var bytes: [UInt8] = []
        /// Stream offset and length of each frame, and the fds it should carry.
        var frames: [(start: Int, length: Int, fds: [Int32])] = []
        var requests: [EventRequest] = []

        mutating func add(_ request: EventRequest, tag: UInt64, fds: [Int32] = []) {
            let frame = EventCodec.encodeRequest(request, tag: tag)
            frames.append((bytes.count, frame.count, fds))
            requests.append(request)
            bytes += frame
        }
    }

    func makeStream() -> Stream {
        var s = Stream()
        var rng = SplitMix64(seed: 99)
        s.add(.hello(version: 1, flags: 0, cap: 0x80, ecap: 0), tag: 1)
        s.add(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x1000, offset: 0),
                            MemoryRegionDescriptor(gpa: 0x10000, size: 0x2000, offset: 0)]), tag: 2, fds: [40, 41])
        s.add(.setRootTable(0x5000), tag: 3)
        s.add(.setTranslation(true), tag: 4)
        s.add(.ready, tag: 5)
        for i in 0 ..< 200 {
            let n = Int.random(in: 1 ... 40, using: &rng)
            s.add(.invalidate((0 ..< n).map { _ in InvalidationWords(low: rng.next(), high: rng.next()) }), tag: UInt64(100 + i))
            if i % 50 == 0 {
                s.add(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x1000, offset: 0)]), tag: UInt64(1000 + i), fds: [Int32(500 + i)])
            }
            s.add(.ping, tag: UInt64(2000 + i))
        }
        // A large frame crossing many chunk boundaries.
        s.add(.invalidate((0 ..< 5000).map { InvalidationWords(low: UInt64($0), high: 0) }), tag: 9999)
        return s
    }

    /// Feeds `stream` in chunks whose boundaries are `cuts`, attaching each
    /// frame's fds to the chunk that holds the frame's last byte (what Linux
    /// does when each frame travels in its own sendmsg), and collects frames.
    func feed(_ stream: Stream, cuts: [Int], decoder: inout FrameDecoder<Int32>) -> [FrameDecoder<Int32>.Frame] {
        var out: [FrameDecoder<Int32>.Frame] = []
        var fdFrames = stream.frames.filter { !$0.fds.isEmpty }[...]
        var start = 0
        for end in cuts + [stream.bytes.count] where end > start {
            var position = start
            while position < end {
                // Linux hands a sendmsg's fds to the recvmsg that reads its first
                // byte, and that recvmsg stops at the end of that sendmsg at the
                // latest: cut the read there, the rest comes with the next one.
                var readEnd = end
                var fds: [Int32] = []
                if let next = fdFrames.first, next.start < end {
                    fds = next.fds
                    readEnd = min(end, next.start + next.length)
                    fdFrames.removeFirst()
                }
                decoder.append(Array(stream.bytes[position ..< readEnd]), fds: fds)
                while let result = decoder.next() {
                    out.append(try! result.get())
                }
                position = readEnd
            }
            start = end
        }
        return out
    }

    func assertMatches(_ frames: [FrameDecoder<Int32>.Frame], _ stream: Stream, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(frames.count, stream.requests.count, file: file, line: line)
        for (i, frame) in frames.enumerated() where i < stream.requests.count {
            XCTAssertEqual(try EventCodec.decodeRequest(frame).get(), stream.requests[i], "frame \(i)", file: file, line: line)
            XCTAssertEqual(frame.fds, stream.frames[i].fds, "fds of frame \(i)", file: file, line: line)
        }
    }

    func testWholeByteByByteAndRandomChunksAgree() {
        let stream = makeStream()
        var whole = FrameDecoder<Int32>()
        let reference = feed(stream, cuts: [], decoder: &whole)
        assertMatches(reference, stream)
        XCTAssertEqual(whole.bufferedByteCount, 0)
        XCTAssertEqual(whole.pendingFDs, [])

        var byteByByte = FrameDecoder<Int32>()
        XCTAssertEqual(feed(stream, cuts: Array(1 ..< stream.bytes.count), decoder: &byteByByte), reference)

        for seed: UInt64 in 1 ... 8 {
            var rng = SplitMix64(seed: seed)
            var cuts: [Int] = []
            var at = 0
            while true {
                at += Int.random(in: 1 ... 3000, using: &rng)
                if at >= stream.bytes.count { break }
                cuts.append(at)
            }
            var decoder = FrameDecoder<Int32>()
            XCTAssertEqual(feed(stream, cuts: cuts, decoder: &decoder), reference, "seed \(seed)")
        }
    }

    func testHeaderAndPayloadAreExact() throws {
        var decoder = FrameDecoder<Int32>()
        decoder.append(EventCodec.encodeRequest(.setRootTable(0xabc000), tag: 77) + EventCodec.encodeRequest(.ping, tag: 78))
        let first = try XCTUnwrap(decoder.next()).get()
        XCTAssertEqual(first.header, FrameHeader(type: 3, length: 8, tag: 77))
        XCTAssertEqual(first.payload, le(UInt64(0xabc000)))
        XCTAssertEqual(try XCTUnwrap(decoder.next()).get(), FrameDecoder<Int32>.Frame(header: FrameHeader(type: 9, length: 0, tag: 78), payload: []))
        XCTAssertNil(decoder.next())
    }

    func testPartialFramesWaitAndAreCounted() {
        var decoder = FrameDecoder<Int32>()
        let frame = EventCodec.encodeRequest(.setTranslation(true), tag: 1)
        decoder.append(Array(frame[..<10]))
        XCTAssertNil(decoder.next(), "half a header")
        decoder.append(Array(frame[10 ..< 20]))
        XCTAssertNil(decoder.next(), "header, half a payload")
        XCTAssertEqual(decoder.bufferedByteCount, 20)
        decoder.append(Array(frame[20...]))
        XCTAssertNotNil(decoder.next())
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    // MARK: - Descriptors

    func testJoinedReadGivesFDsToTheFrameWhereTheReadEnds() throws {
        // HELLO and SET_MEM_TABLE pipelined: Linux may return both in one
        // recvmsg, with the table's descriptors.
        let hello = EventCodec.encodeRequest(.hello(version: 1, flags: 0, cap: 0x80, ecap: 0), tag: 1)
        let table = EventCodec.encodeRequest(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x1000, offset: 0)]), tag: 2)
        var decoder = FrameDecoder<Int32>()
        decoder.append(hello + table, fds: [7])
        XCTAssertEqual(try XCTUnwrap(decoder.next()).get().fds, [])
        XCTAssertEqual(try XCTUnwrap(decoder.next()).get().fds, [7])

        // The document's literal rule (§1.3): the frame in which the bytes start.
        var literal = FrameDecoder<Int32>(fdAssignment: .frameOfFirstByte)
        literal.append(hello + table, fds: [7])
        XCTAssertEqual(try XCTUnwrap(literal.next()).get().fds, [7])
        XCTAssertEqual(try XCTUnwrap(literal.next()).get().fds, [])
    }

    func testFDsWithAChunkThatStartsAndEndsInsideOneFrame() throws {
        let table = EventCodec.encodeRequest(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x1000, offset: 0)]), tag: 2)
        for policy in [FDAssignment.frameOfLastByte, .frameOfFirstByte] {
            var decoder = FrameDecoder<Int32>(fdAssignment: policy)
            decoder.append(Array(table[..<5]))
            decoder.append(Array(table[5 ..< 20]), fds: [3, 4])
            XCTAssertNil(decoder.next())
            XCTAssertEqual(decoder.pendingFDs, [3, 4])
            decoder.append(Array(table[20...]) + EventCodec.encodeRequest(.ping, tag: 3))
            XCTAssertEqual(try XCTUnwrap(decoder.next()).get().fds, [3, 4], "\(policy)")
            XCTAssertEqual(try XCTUnwrap(decoder.next()).get().fds, [])
            XCTAssertEqual(decoder.pendingFDs, [])
        }
    }

    func testChunkSpanningFramesUnderEachPolicy() throws {
        // A read that ends in the first byte of the third frame.
        let a = EventCodec.encodeRequest(.ping, tag: 1)
        let b = EventCodec.encodeRequest(.ready, tag: 2)
        let c = EventCodec.encodeRequest(.reset, tag: 3)
        let stream = a + b + c
        for (policy, owner) in [(FDAssignment.frameOfLastByte, 2), (.frameOfFirstByte, 0)] {
            var decoder = FrameDecoder<Int32>(fdAssignment: policy)
            decoder.append(Array(stream[..<33]), fds: [9])
            decoder.append(Array(stream[33...]))
            let frames = try (0 ..< 3).map { _ in try XCTUnwrap(decoder.next()).get() }
            XCTAssertEqual(frames.map(\.fds), (0 ..< 3).map { $0 == owner ? [9] : [] }, "\(policy)")
        }
    }

    func testFDsOfAPartialFrameCanBeTakenForClosing() {
        var decoder = FrameDecoder<Int32>()
        let table = EventCodec.encodeRequest(.setMemTable([MemoryRegionDescriptor(gpa: 0, size: 0x1000, offset: 0)]), tag: 2)
        decoder.append(Array(table[..<16]), fds: [10, 11])
        XCTAssertNil(decoder.next())
        XCTAssertEqual(decoder.pendingFDs, [10, 11])
        XCTAssertEqual(decoder.takeAllFDs(), [10, 11])
        XCTAssertEqual(decoder.pendingFDs, [])
        XCTAssertEqual(decoder.takeAllFDs(), [])
    }

    // MARK: - Oversize

    func testOversizeLengthPoisons() throws {
        var decoder = FrameDecoder<Int32>()
        decoder.append(EventCodec.encodeRequest(.ping, tag: 1))
        var header: [UInt8] = []
        FrameHeader(type: 7, length: 1_048_577, tag: 42).encode(into: &header)
        decoder.append(header, fds: [5])
        XCTAssertEqual(try XCTUnwrap(decoder.next()).get().header.tag, 1, "frames before the bad one are delivered")
        let result = try XCTUnwrap(decoder.next())
        guard case .failure(let wireError) = result else { return XCTFail("expected TOO_LARGE") }
        XCTAssertEqual(wireError.status, .tooLarge)
        XCTAssertTrue(wireError.message.contains("1048577"), wireError.message)
        XCTAssertTrue(wireError.message.contains("stream offset 16"), wireError.message)
        XCTAssertTrue(decoder.isPoisoned)
        XCTAssertEqual(decoder.rejectedHeader, FrameHeader(type: 7, length: 1_048_577, tag: 42))
        // Poisoned: nothing more, even when valid frames follow; fds kept for closing.
        decoder.append(EventCodec.encodeRequest(.ping, tag: 2), fds: [6])
        XCTAssertNil(decoder.next())
        XCTAssertEqual(decoder.takeAllFDs(), [5, 6])
        // The reply the daemon sends for it.
        let reply = EventCodec.encodeReply(requestType: 7, tag: 42, error: wireError)
        XCTAssertEqual(FrameHeader.decode(reply[..<16]).type, 0x8000_0007)
    }

    func testMaximumLengthIsAccepted() throws {
        var decoder = FrameDecoder<Int32>()
        var header: [UInt8] = []
        FrameHeader(type: 7, length: 1_048_576, tag: 1).encode(into: &header)
        decoder.append(header)
        XCTAssertNil(decoder.next(), "waits for the payload")
        XCTAssertFalse(decoder.isPoisoned)
        decoder.append([UInt8](repeating: 0, count: 1_048_576))
        XCTAssertEqual(try XCTUnwrap(decoder.next()).get().payload.count, 1_048_576)
    }

    func testBufferIsCompactedWhileStreaming() {
        // Many frames through one decoder never accumulate consumed bytes.
        var decoder = FrameDecoder<Int32>()
        let frame = EventCodec.encodeRequest(.invalidate([InvalidationWords(low: 0x75, high: 0)]), tag: 1)
        for _ in 0 ..< 20_000 {
            decoder.append(frame + Array(frame[..<7]))
            _ = decoder.next()
            decoder.append(Array(frame[7...]))
            _ = decoder.next()
            XCTAssertEqual(decoder.bufferedByteCount, 0)
        }
    }
}
