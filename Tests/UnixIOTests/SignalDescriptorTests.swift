import Glibc
import UnixIO
import XCTest

/// Signals are sent to this test's own thread (pthread_kill), never to the
/// process: the test runner has other threads that do not block SIGUSR1,
/// and a process-directed signal could land on one of them and run its
/// default action (terminating the run). Each test restores the thread's
/// mask after draining what it raised.
final class SignalDescriptorTests: SocketTestCase {
    private var savedMask = sigset_t()

    override func setUp() {
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_BLOCK, &empty, &savedMask)
    }

    override func tearDown() {
        pthread_sigmask(SIG_SETMASK, &savedMask, nil)
    }

    private func isBlocked(_ signal: Int32) -> Bool {
        var current = sigset_t()
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_BLOCK, &empty, &current)
        return sigismember(&current, signal) == 1
    }

    func testBlocksItsSignalsAndReadsEveryPendingOne() throws {
        XCTAssertFalse(isBlocked(SIGUSR1))
        let signals = try SignalDescriptor(signals: [SIGUSR1, SIGUSR2])
        defer { try? signals.close() }
        XCTAssertTrue(isBlocked(SIGUSR1))
        XCTAssertTrue(isBlocked(SIGUSR2))
        XCTAssertFalse(isBlocked(SIGHUP), "only the signals asked for")
        XCTAssertEqual(fcntl(signals.fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK)
        XCTAssertEqual(fcntl(signals.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)

        XCTAssertEqual(try signals.read(), [], "nothing pending: empty, without blocking")

        XCTAssertEqual(pthread_kill(pthread_self(), SIGUSR1), 0)
        XCTAssertEqual(pthread_kill(pthread_self(), SIGUSR2), 0)
        XCTAssertEqual(Set(try signals.read()), [SIGUSR1, SIGUSR2])
        XCTAssertEqual(try signals.read(), [], "read drains")
    }

    func testPollerWakesWhenAnotherThreadSignalsUs() throws {
        let signals = try SignalDescriptor(signals: [SIGUSR1])
        defer { try? signals.close() }
        let poller = Poller()
        poller.register(signals.fd, readable: true, writable: false)
        XCTAssertTrue(try poller.wait(timeoutMilliseconds: 0).isEmpty)

        let target = pthread_self()
        let worker = Worker {
            usleep(20_000)
            pthread_kill(target, SIGUSR1)
        }
        defer { worker.join() }
        let ready = try poller.wait(timeoutMilliseconds: 5000)
        XCTAssertEqual(ready.first?.fd, signals.fd)
        XCTAssertEqual(ready.first?.readable, true)
        XCTAssertEqual(try signals.read(), [SIGUSR1])
    }

    func testInvalidSignalBlocksNothing() {
        let error = expectError { try SignalDescriptor(signals: [SIGUSR1, 4096]) }
        XCTAssertEqual(error?.call, "signalfd")
        XCTAssertEqual(error?.errno, EINVAL)
        XCTAssertFalse(isBlocked(SIGUSR1))
    }
}
