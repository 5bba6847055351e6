import Foundation
import Glibc

/// Kills the daemon from a second thread after a delay, unless cancelled first.
final class SoakKillTimer: @unchecked Sendable {
    // @unchecked: the state is behind `lock`; the supervisor is touched only
    // by this thread until `finished`, and by the main thread after it.
    private let lock = NSLock()
    private let supervisor: DaemonSupervisor
    private let delay: Duration
    private var _fired = false, _cancelled = false, _finished = false

    init(supervisor: DaemonSupervisor, delay: Duration) {
        self.supervisor = supervisor
        self.delay = delay
    }

    func start() { Thread { self.run() }.start() }

    private func run() {
        let deadline = ContinuousClock.now + delay
        while ContinuousClock.now < deadline {
            if cancelledNow { break }
            usleep(500)
        }
        lock.lock()
        if !_cancelled {
            _fired = true
            lock.unlock()
            supervisor.kill()
            lock.lock()
        }
        _finished = true
        lock.unlock()
    }

    private var cancelledNow: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }

    /// Stops the timer if it has not fired; returns whether it had.
    func cancel() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if !_fired { _cancelled = true }
        return _fired
    }

    func waitUntilFinished() {
        while true {
            lock.lock()
            let done = _finished
            lock.unlock()
            if done { return }
            usleep(1_000)
        }
    }
}
