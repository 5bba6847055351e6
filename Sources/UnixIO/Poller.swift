import Glibc
import Posix

/// poll(2) over a set of descriptors, for a single-threaded event loop.
///
/// Level-triggered: a descriptor stays reported for as long as it is ready.
/// The `pollfd` array is kept between calls and edited in place, and the
/// ready descriptors can be visited in it (`forEachReady`): a wait allocates
/// nothing. Not thread-safe: one loop owns it.
public final class Poller {
    /// One ready descriptor. `error` covers POLLERR and POLLNVAL (a
    /// descriptor closed while registered: a bug in the owner).
    public typealias Event = (fd: Int32, readable: Bool, writable: Bool, hangup: Bool, error: Bool)

    private var entries: [pollfd] = []
    /// Descriptor → its index in `entries`; rebuilt on first use after `add`.
    private var positions: [Int32: Int] = [:]
    private var positionsCurrent = true

    public init() {}

    /// How many descriptors are registered.
    public var count: Int { entries.count }

    /// Starts watching `fd`, or changes what it is watched for. Hang-ups
    /// and errors are reported even when neither direction is asked for.
    public func register(_ fd: Int32, readable: Bool, writable: Bool) {
        precondition(fd >= 0, "Poller cannot watch \(fd)")
        let events = Self.events(readable: readable, writable: writable)
        updatePositions()
        if let position = positions[fd] {
            entries[position].events = events
        } else {
            positions[fd] = entries.count
            entries.append(pollfd(fd: fd, events: events, revents: 0))
        }
    }

    /// Starts watching `fd`, which the caller knows is not registered: a
    /// loop that rebuilds its set after `removeAll` each round. No lookup
    /// (issue 14: `register`'s dictionary was 3.6K of 41K instructions per
    /// request with five descriptors); the index is rebuilt only if
    /// `register`, `unregister` or `registration` is used afterwards.
    public func add(_ fd: Int32, readable: Bool, writable: Bool) {
        precondition(fd >= 0, "Poller cannot watch \(fd)")
        entries.append(pollfd(fd: fd, events: Self.events(readable: readable, writable: writable), revents: 0))
        positionsCurrent = false
    }

    private static func events(readable: Bool, writable: Bool) -> Int16 {
        (readable ? Int16(POLLIN) : 0) | (writable ? Int16(POLLOUT) : 0)
    }

    private func updatePositions() {
        guard !positionsCurrent else { return }
        positions.removeAll(keepingCapacity: true)
        for (index, entry) in entries.enumerated() {
            precondition(positions.updateValue(index, forKey: entry.fd) == nil, "Poller: descriptor \(entry.fd) added twice")
        }
        positionsCurrent = true
    }

    /// Stops watching `fd` (no effect if it was not registered). Do this
    /// before closing it: poll reports a closed number as POLLNVAL, and a
    /// reused one as someone else's readiness.
    public func unregister(_ fd: Int32) {
        updatePositions()
        guard let position = positions.removeValue(forKey: fd) else { return }
        let last = entries.count - 1
        if position != last {
            entries[position] = entries[last]
            positions[entries[position].fd] = position
        }
        entries.removeLast()
    }

    /// Stops watching everything, keeping the storage: a loop that rebuilds
    /// its set each round allocates nothing for it.
    public func removeAll() {
        entries.removeAll(keepingCapacity: true)
        positions.removeAll(keepingCapacity: true)
        positionsCurrent = true
    }

    /// Whether `fd` is registered, and for what.
    public func registration(of fd: Int32) -> (readable: Bool, writable: Bool)? {
        updatePositions()
        guard let position = positions[fd] else { return nil }
        let events = Int32(entries[position].events)
        return (events & POLLIN != 0, events & POLLOUT != 0)
    }

    /// Waits until a registered descriptor is ready or the timeout passes
    /// (negative: wait forever; 0: just look). Returns the ready ones, empty
    /// on timeout. An interrupted wait resumes with the time that is left.
    public func wait(timeoutMilliseconds: Int32) throws(SystemError) -> [Event] {
        guard try wait(timeoutMilliseconds: timeoutMilliseconds, since: nil) > 0 else { return [] }
        var events: [Event] = []
        forEachReady { events.append($0) }
        return events
    }

    /// `wait` without a result array: returns how many descriptors are
    /// ready; `forEachReady` then visits them in place. `since` is when the
    /// caller computed the timeout, if it has that reading: an interrupted
    /// wait resumes with the time left from then, and no clock is read
    /// unless a signal interrupts. Without it, a positive timeout costs one
    /// clock read here; an infinite or zero one none (issue 14: under QEMU
    /// on hpet a clock read is a 1.8 µs syscall).
    public func wait(timeoutMilliseconds: Int32, since: ContinuousClock.Instant?) throws(SystemError) -> Int {
        let deadline: ContinuousClock.Instant?
        if timeoutMilliseconds > 0 {
            deadline = (since ?? .now).advanced(by: .milliseconds(timeoutMilliseconds))
        } else {
            deadline = nil
        }
        var first = true
        // Result carries the typed error out of Array's untyped-rethrows closure.
        let found = try entries.withUnsafeMutableBufferPointer { buffer in
            Result { () throws(SystemError) -> Int in
                try Poll.wait(buffer) {
                    guard let deadline else { return timeoutMilliseconds }
                    if first && since != nil {
                        first = false
                        return timeoutMilliseconds
                    }
                    first = false
                    return Self.milliseconds(until: deadline)
                }
            }
        }.get()
        return found
    }

    /// Calls `body` for each descriptor the last `wait` found ready, in
    /// registration order, reading the `pollfd` array in place. `body` must
    /// not register or unregister descriptors of this Poller.
    public func forEachReady(_ body: (Event) -> Void) {
        var index = 0
        while index < entries.count {
            let entry = entries[index]
            index += 1
            guard entry.revents != 0 else { continue }
            let revents = Int32(entry.revents)
            body((fd: entry.fd,
                  readable: revents & POLLIN != 0,
                  writable: revents & POLLOUT != 0,
                  hangup: revents & POLLHUP != 0,
                  error: revents & (POLLERR | POLLNVAL) != 0))
        }
    }

    /// Whole milliseconds left until `deadline`, rounded up so a wait never
    /// ends early; 0 once it has passed.
    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let left = ContinuousClock.now.duration(to: deadline)
        if left <= .zero { return 0 }
        let (seconds, attoseconds) = left.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}
