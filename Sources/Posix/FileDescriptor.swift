import CPosix
import Glibc
import Synchronization

/// Sole owner of one open file descriptor.
///
/// - Closed exactly once: by an explicit `close()`, which reports the
///   error, or else silently when the owner is deallocated; or handed away
///   whole with `take()`, after which this object never touches it.
/// - Calls see the raw number only inside a scope (`call`, `withRawValue`).
///   A `close()` that arrives while a scope is open does not close the
///   number under the running call: the last scope to leave closes it. So
///   no call can run on a number that was closed and handed to another
///   open(2) in between, and calls on one descriptor are not serialized
///   against each other (a blocking read and a write on one socket from two
///   threads both proceed).
/// - Use after close is an error value (EBADF, detail "already closed")
///   that never reaches the kernel. EBADF *from the kernel* on a number we
///   hold open means something else closed it: a bug, so the process stops
///   there with a message (NIO treats it the same way), instead of going on
///   with a number that may now be someone else's file.
///
/// The closer is injectable so that a fake kernel (the VFIO tests) hands out
/// numbers of its own and sees their close; the default is close(2).
public final class FileDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// Closes a raw number: 0, or -errno. Called at most once per descriptor
    /// and never retried.
    public typealias Closer = @Sendable (Int32) -> Int32

    /// close(2), through the shim.
    public static let kernelClose: Closer = { cposix_close($0) }

    private struct State {
        /// The number; -1 once closed or taken.
        var number: Int32
        /// Scopes currently using the number.
        var users = 0
        /// `close()` was called while scopes were open; the last one closes.
        var closeRequested = false
    }

    private let state: Mutex<State>
    private let closer: Closer
    /// The number this object was given, for messages after it is closed.
    private let adopted: Int32
    private let name: String?

    /// Takes ownership of `fd`, which must be open and owned by no one else.
    ///
    /// - Parameters:
    ///   - subject: what the descriptor is, for error messages
    ///     ("/dev/vfio/12", "socket /run/x.sock"); "fd N" when nil.
    ///   - close: how to close it; close(2) unless a fake kernel owns the number.
    public init(adopting fd: Int32, subject: String? = nil, close: @escaping Closer = FileDescriptor.kernelClose) {
        precondition(fd >= 0, "FileDescriptor needs an open descriptor, got \(fd)")
        state = Mutex(State(number: fd))
        closer = close
        adopted = fd
        name = subject
    }

    /// What the descriptor is, as its errors name it.
    public var subject: String { name ?? "fd \(adopted)" }

    /// The number while open, -1 once closed or taken: for identity only
    /// (a poll set, a dictionary key, a log line). Calls go through `call`
    /// or `withRawValue`, which keep the number open while they run.
    public var number: Int32 {
        state.withLock { $0.closeRequested ? -1 : $0.number }
    }

    /// True until `close()` or `take()`.
    public var isOpen: Bool { number >= 0 }

    // MARK: scoped access

    /// Runs `body` with the raw number, which stays open until it returns.
    /// Throws EBADF (detail "already closed"), naming `call`, without running
    /// `body` when the descriptor was closed or taken.
    public func withRawValue<Result, Failure: SystemErrorWrapping>(
        _ call: String, _ body: (Int32) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        guard let fd = acquire() else { throw Failure(wrapping: alreadyClosed(call)) }
        defer { release() }
        return try body(fd)
    }

    /// Runs `body` with the raw numbers of every descriptor in `descriptors`
    /// (for a call that takes several, such as sendmsg with SCM_RIGHTS); all
    /// stay open until it returns.
    public static func withRawValues<Result>(
        _ descriptors: [FileDescriptor], _ call: String, _ body: (UnsafeBufferPointer<Int32>) throws(SystemError) -> Result
    ) throws(SystemError) -> Result {
        if descriptors.isEmpty { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        return try withUnsafeTemporaryAllocation(of: Int32.self, capacity: descriptors.count) {
            (numbers) throws(SystemError) -> Result in
            for (index, descriptor) in descriptors.enumerated() {
                guard let fd = descriptor.acquire() else {
                    for held in descriptors[..<index] { held.release() }
                    throw descriptor.alreadyClosed(call)
                }
                numbers[index] = fd
            }
            defer { for descriptor in descriptors { descriptor.release() } }
            return try body(UnsafeBufferPointer(numbers))
        }
    }

    /// One system call on this descriptor: `body` gets the raw number and
    /// returns a result or -errno; EINTR is retried (`retryingEINTR`).
    /// Returns the result as is, -errno included, for callers that handle
    /// some errnos themselves (EAGAIN); throws only when the descriptor was
    /// already closed. Stops the process on EBADF (see the type's notes).
    @inlinable
    public func rawCall<T: FixedWidthInteger & SignedInteger>(_ call: String, _ body: (Int32) -> T) throws(SystemError) -> T {
        guard let fd = acquire() else { throw alreadyClosed(call) }
        let result = retryingEINTR { body(fd) }
        release()
        if result == -T(EBADF) { badDescriptor(call, fd) }
        return result
    }

    /// `rawCall`, with every failure thrown as an error naming `call` and
    /// this descriptor's subject.
    @inlinable
    @discardableResult
    public func call<T: FixedWidthInteger & SignedInteger>(
        _ call: String, detail: @autoclosure () -> String? = nil, _ body: (Int32) -> T
    ) throws(SystemError) -> T {
        let result = try rawCall(call, body)
        if result >= 0 { return result }
        throw error(call, errno: Int32(truncatingIfNeeded: -result), detail: detail())
    }

    /// An error naming `call` on this descriptor.
    public func error(_ call: String, errno: Int32, detail: String? = nil) -> SystemError {
        SystemError(call: call, errno: errno, subject: subject, detail: detail)
    }

    // MARK: ending ownership

    /// Closes the descriptor, once; the error close(2) reports is thrown, and
    /// the descriptor counts as closed either way (Linux releases it even
    /// then, so it is never retried). A second call throws EBADF without
    /// touching the kernel: the number may already belong to someone else.
    ///
    /// Called while a scope on another thread is using the number, it only
    /// marks the descriptor closed; that scope closes it as it leaves, and
    /// any error of that close is lost.
    public func close() throws(SystemError) {
        let fd = try state.withLock { (state) throws(SystemError) -> Int32? in
            guard state.number >= 0, !state.closeRequested else { throw alreadyClosed("close") }
            state.closeRequested = true
            guard state.users == 0 else { return nil }
            let fd = state.number
            state.number = -1
            return fd
        }
        guard let fd else { return }
        let result = closer(fd)
        if result == -EBADF { badDescriptor("close", fd) }
        if result < 0 { throw error("close", errno: -result) }
    }

    /// Hands ownership away: returns the number, which this object will
    /// never close. For code that closes it itself (a child process, a
    /// kernel object that takes it over).
    public func take() -> Int32 {
        state.withLock { state in
            precondition(state.number >= 0 && !state.closeRequested,
                         "take() on \(subject), which was already closed or taken")
            precondition(state.users == 0, "take() on \(subject) while a call is using it")
            let fd = state.number
            state.number = -1
            return fd
        }
    }

    deinit {
        // Nothing can be reported from deinit; close() is the way to see
        // close errors. No scope can be open: each holds a reference.
        let fd = state.withLock { $0.number }
        if fd >= 0 { _ = closer(fd) }
    }

    // MARK: identity

    /// Two owners are equal only if they are the same object: one open
    /// descriptor has exactly one owner.
    public static func == (lhs: FileDescriptor, rhs: FileDescriptor) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    public var description: String {
        let fd = number
        return fd >= 0 ? "fd \(fd) (\(subject))" : "closed descriptor (\(subject))"
    }

    // MARK: the scope count

    /// The number, counted as in use; nil once closed or taken.
    @usableFromInline
    func acquire() -> Int32? {
        state.withLock { state in
            guard state.number >= 0, !state.closeRequested else { return nil }
            state.users += 1
            return state.number
        }
    }

    /// Ends one `acquire`; the last scope out performs a close that came
    /// in while it ran.
    @usableFromInline
    func release() {
        let pending = state.withLock { state -> Int32? in
            state.users -= 1
            guard state.users == 0, state.closeRequested, state.number >= 0 else { return nil }
            let fd = state.number
            state.number = -1
            return fd
        }
        if let pending { _ = closer(pending) }
    }

    @usableFromInline
    func alreadyClosed(_ call: String) -> SystemError {
        error(call, errno: EBADF, detail: "descriptor already closed")
    }

    /// EBADF from the kernel on a number this object holds open.
    @usableFromInline
    func badDescriptor(_ call: String, _ fd: Int32) -> Never {
        preconditionFailure("\(call) on \(subject) (fd \(fd)) failed with EBADF, but this process owns that "
            + "descriptor and has not closed it: something closed it behind its owner's back (a bug)")
    }
}
