import Glibc
import UnixIO
import XCTest

final class PollerTests: SocketTestCase {
    func testReadableWritableAndHangup() throws {
        let (a, b) = try UnixConnection.pair()
        let poller = Poller()
        poller.register(a.fd, readable: true, writable: false)
        XCTAssertTrue(try poller.wait(timeoutMilliseconds: 0).isEmpty, "nothing to read yet")

        try b.sendAll(bytes("x"))
        let ready = try poller.wait(timeoutMilliseconds: 1000)
        XCTAssertEqual(ready.count, 1)
        XCTAssertEqual(ready.first?.fd, a.fd)
        XCTAssertEqual(ready.first?.readable, true)
        XCTAssertEqual(ready.first?.writable, false, "not asked for")

        poller.register(a.fd, readable: false, writable: true)
        XCTAssertEqual(poller.count, 1, "re-registering changes, not adds")
        let writable = try poller.wait(timeoutMilliseconds: 1000)
        XCTAssertEqual(writable.first?.writable, true)
        XCTAssertEqual(writable.first?.readable, false)

        b.close()
        poller.register(a.fd, readable: true, writable: false)
        let hungUp = try XCTUnwrap(try poller.wait(timeoutMilliseconds: 1000).first)
        XCTAssertTrue(hungUp.hangup)
        XCTAssertTrue(hungUp.readable, "end of stream reads as readable")
    }

    /// `add` (the event loop's per-round rebuild) keeps no index; the
    /// calls that need one rebuild it, so mixing them stays right.
    func testAddedDescriptorsAreFoundByTheIndexedCalls() throws {
        let pairs = try (0..<3).map { _ in try UnixConnection.pair() }
        let poller = Poller()
        poller.register(pairs[0].0.fd, readable: true, writable: false)
        poller.removeAll()
        poller.add(pairs[0].0.fd, readable: true, writable: false)
        poller.add(pairs[1].0.fd, readable: false, writable: true)
        poller.add(pairs[2].0.fd, readable: true, writable: false)
        XCTAssertEqual(poller.count, 3)
        XCTAssertEqual(poller.registration(of: pairs[1].0.fd)?.writable, true)
        XCTAssertEqual(poller.registration(of: pairs[1].0.fd)?.readable, false)

        poller.register(pairs[1].0.fd, readable: true, writable: false)
        XCTAssertEqual(poller.count, 3, "register after add changes the added entry")
        poller.unregister(pairs[0].0.fd)
        XCTAssertNil(poller.registration(of: pairs[0].0.fd))
        XCTAssertEqual(poller.registration(of: pairs[2].0.fd)?.readable, true, "the last entry moved into the hole is still found")

        for (_, b) in pairs { try b.sendAll(bytes("x")) }
        let ready = try poller.wait(timeoutMilliseconds: 1000)
        XCTAssertEqual(Set(ready.map(\.fd)), [pairs[1].0.fd, pairs[2].0.fd])

        poller.removeAll()
        poller.add(pairs[2].0.fd, readable: true, writable: false)
        XCTAssertNil(poller.registration(of: pairs[1].0.fd), "removeAll forgot the earlier round's entries")
        XCTAssertEqual(Set(try poller.wait(timeoutMilliseconds: 1000).map(\.fd)), [pairs[2].0.fd])
    }

    func testTimeoutWaitsAndReturnsNothing() throws {
        let (a, b) = try UnixConnection.pair()
        defer { withExtendedLifetime(b) {} }
        let poller = Poller()
        poller.register(a.fd, readable: true, writable: false)
        let start = ContinuousClock.now
        XCTAssertTrue(try poller.wait(timeoutMilliseconds: 60).isEmpty)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(55))
    }

    func testUnregisterKeepsTheOthersRight() throws {
        let pairs = try (0..<3).map { _ in try UnixConnection.pair() }
        let poller = Poller()
        for (a, _) in pairs { poller.register(a.fd, readable: true, writable: false) }
        poller.unregister(pairs[0].0.fd)
        poller.unregister(pairs[0].0.fd)
        XCTAssertEqual(poller.count, 2)
        XCTAssertNil(poller.registration(of: pairs[0].0.fd))
        XCTAssertEqual(poller.registration(of: pairs[2].0.fd)?.readable, true)

        for (_, b) in pairs { try b.sendAll(bytes("x")) }
        let ready = try poller.wait(timeoutMilliseconds: 1000)
        XCTAssertEqual(Set(ready.map(\.fd)), [pairs[1].0.fd, pairs[2].0.fd])

        poller.removeAll()
        XCTAssertEqual(poller.count, 0)
        XCTAssertTrue(try poller.wait(timeoutMilliseconds: 0).isEmpty)
    }

    func testClosedRegisteredDescriptorIsAnError() throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(writeEnd) }
        let poller = Poller()
        poller.register(readEnd, readable: true, writable: false)
        close(readEnd)
        let event = try XCTUnwrap(try poller.wait(timeoutMilliseconds: 0).first)
        XCTAssertEqual(event.fd, readEnd)
        XCTAssertTrue(event.error, "POLLNVAL")
    }

    func testListenerBecomesReadableWhenAClientConnects() throws {
        let scratch = try ScratchDirectory()
        let listener = try UnixListener.listen(path: scratch.file("poll.sock"))
        defer { listener.close() }
        let poller = Poller()
        poller.register(listener.fd, readable: true, writable: false)
        XCTAssertTrue(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        let client = try UnixConnection.connect(path: listener.path)
        XCTAssertEqual(try poller.wait(timeoutMilliseconds: 1000).first?.readable, true)
        let accepted = try XCTUnwrap(try listener.accept())
        XCTAssertEqual(accepted.peer.pid, getpid())
        _ = client
    }

    /// The allocation-free form: `wait` counts, `forEachReady` visits exactly
    /// the ready descriptors in place, and a timeout counts none.
    func testForEachReadyVisitsOnlyTheReadyOnes() throws {
        let (a, b) = try UnixConnection.pair()
        let (c, d) = try UnixConnection.pair()
        defer { withExtendedLifetime((b, d)) {} }
        let poller = Poller()
        poller.register(a.fd, readable: true, writable: false)
        poller.register(c.fd, readable: true, writable: false)
        XCTAssertEqual(try poller.wait(timeoutMilliseconds: 20, since: .now), 0)
        var none = 0
        poller.forEachReady { _ in none += 1 }
        XCTAssertEqual(none, 0)

        try d.sendAll(bytes("y"))
        XCTAssertEqual(try poller.wait(timeoutMilliseconds: -1, since: nil), 1)
        var seen: [Int32] = []
        poller.forEachReady { event in
            XCTAssertTrue(event.readable)
            seen.append(event.fd)
        }
        XCTAssertEqual(seen, [c.fd])
    }
}
