import Foundation
import Glibc

/// What one invalidation costs the daemon in system calls and heap
/// allocations, on the host with the dry-run backend, batch 1 (every
/// invalidation waits for its ack, as a vfio-user DMA_MAP does).
///
/// Each count is the difference of two runs, `long` and `short` requests,
/// divided by their difference: the connection, HELLO, the device's
/// attach and the disconnect are in both and cancel out, and so does the
/// daemon's start, which happens before strace attaches (-p). The
/// difference spans whole cycles of `vtdbridge-sim load`'s window, so it is
/// half page maps and half unmaps.
///
/// The floor is the same count for `vtdbridge-sim socket-echo`, the
/// benchmark's second process of a plain Unix-socket round trip (48 → 16 B
/// in vfio-user-bench; here 56 → 48 B, the size of a one-page INVALIDATE
/// with its wait descriptor and of its reply).
struct CostBench {
    let binDirectory: String

    /// Per-request figures, one per repetition.
    struct Figures {
        var daemonSyscalls: [Double] = []
        var daemonCalls: [String: Double] = [:]     // per name, last repetition
        var daemonErrors: [String: Double] = [:]
        var daemonAllocations: [Double] = []
        var daemonAllocationsBy: [String: Double] = [:]
        var floorSyscalls: [Double] = []
        var floorCalls: [String: Double] = [:]
        var floorAllocations: [Double] = []
    }

    static let window = 4096
    static let short = window
    static let long = window + 4 * window

    /// One run's totals: syscalls by name (calls, errors) and allocations.
    struct Totals {
        var calls: [String: Int] = [:]
        var errors: [String: Int] = [:]
        var allocations: [Int] = []

        static func - (a: Totals, b: Totals) -> Totals {
            var d = Totals()
            for name in Set(a.calls.keys).union(b.calls.keys) {
                d.calls[name] = (a.calls[name] ?? 0) - (b.calls[name] ?? 0)
                d.errors[name] = (a.errors[name] ?? 0) - (b.errors[name] ?? 0)
            }
            d.allocations = zip(a.allocations, b.allocations).map { $0 - $1 }
            return d
        }
    }

    func run(repetitions: Int) throws -> Figures {
        let scratch = NSTemporaryDirectory() + "vtdbridge-costs-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let counter = try AllocationCounter.build(into: binDirectory)
        try Self.verifyInterposition(binDirectory + "/vtdbridged", counter: counter, scratch: scratch)

        var f = Figures()
        let requests = Double(Self.long - Self.short)
        for r in 0..<repetitions {
            let d = try daemonRun(count: Self.long, counter: counter, directory: scratch + "/d\(r)l")
                - daemonRun(count: Self.short, counter: counter, directory: scratch + "/d\(r)s")
            f.daemonSyscalls.append(Double(d.calls.values.reduce(0, +)) / requests)
            f.daemonCalls = d.calls.mapValues { Double($0) / requests }
            f.daemonErrors = d.errors.mapValues { Double($0) / requests }
            f.daemonAllocations.append(Double(d.allocations.reduce(0, +)) / requests)
            f.daemonAllocationsBy = Dictionary(uniqueKeysWithValues: zip(AllocationCounter.functions, d.allocations.map { Double($0) / requests }))
            let e = try echoRun(count: Self.long, counter: counter, directory: scratch + "/e\(r)l")
                - echoRun(count: Self.short, counter: counter, directory: scratch + "/e\(r)s")
            f.floorSyscalls.append(Double(e.calls.values.reduce(0, +)) / requests)
            f.floorCalls = e.calls.mapValues { Double($0) / requests }
            f.floorAllocations.append(Double(e.allocations.reduce(0, +)) / requests)
        }
        return f
    }

    /// The binary must take malloc from libc's dynamic symbol table, or the
    /// preloaded counter sees nothing: check that a started daemon counted.
    static func verifyInterposition(_ program: String, counter: AllocationCounter, scratch: String) throws {
        let file = scratch + "/verify.allocs"
        let daemon = try BenchDaemon(program: program, directory: scratch + "/verify", withDevice: true,
                                     environment: counter.environment(file))
        defer { daemon.stop() }
        let started = try AllocationCounter.read(file).reduce(0, +)
        guard started > 0 else {
            throw BenchError("the LD_PRELOAD allocation counter saw no allocation in a started \(program): it does not interpose")
        }
    }

    func daemonRun(count: Int, counter: AllocationCounter, directory: String) throws -> Totals {
        let file = directory + ".allocs"
        let daemon = try BenchDaemon(program: binDirectory + "/vtdbridged", directory: directory, withDevice: true,
                                     environment: counter.environment(file))
        defer { daemon.stop() }
        let trace = try Strace(pid: daemon.pid, output: directory + ".strace")
        let before = try AllocationCounter.read(file)
        let result = try daemon.load(sim: binDirectory + "/vtdbridge-sim", count: count, batch: 1)
        guard (result["invalidations"] as? Int) == count else { throw BenchError("vtdbridge-sim load did not send \(count)") }
        // Let the daemon see the disconnect in both runs before counting.
        usleep(200_000)
        var totals = try trace.finish()
        totals.allocations = zip(try AllocationCounter.read(file), before).map { $0 - $1 }
        return totals
    }

    /// `count` round trips with socket-echo, traced and counted as the daemon is.
    func echoRun(count: Int, counter: AllocationCounter, directory: String) throws -> Totals {
        let path = directory + ".sock"
        let file = directory + ".allocs"
        let listener = try Self.listen(path)
        defer { close(listener) }
        let echo = Process()
        echo.executableURL = URL(fileURLWithPath: binDirectory + "/vtdbridge-sim")
        echo.arguments = ["socket-echo", "--socket", path, "--request-size", "56", "--reply-size", "48"]
        var env = ProcessInfo.processInfo.environment
        env.merge(counter.environment(file)) { $1 }
        echo.environment = env
        try echo.run()
        defer {
            if echo.isRunning { kill(echo.processIdentifier, SIGTERM) }
            echo.waitUntilExit()
        }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { throw BenchError("accept for socket-echo: errno \(errno)") }
        defer { close(connection) }
        let trace = try Strace(pid: echo.processIdentifier, output: directory + ".strace")
        let before = try AllocationCounter.read(file)
        try Self.roundTrips(count, over: connection)
        usleep(200_000)
        var totals = try trace.finish()
        totals.allocations = zip(try AllocationCounter.read(file), before).map { $0 - $1 }
        return totals
    }

    /// `count` round trips with socket-echo over `connection`: 56 bytes out
    /// (a one-page INVALIDATE's size), 48 back (its ack's).
    static func roundTrips(_ count: Int, over connection: Int32) throws {
        let request = [UInt8](repeating: 0x5a, count: 56)
        var reply = [UInt8](repeating: 0, count: 48)
        for _ in 0..<count {
            guard request.withUnsafeBytes({ write(connection, $0.baseAddress, 56) }) == 56 else {
                throw BenchError("write to socket-echo: errno \(errno)")
            }
            var got = 0
            while got < 48 {
                let n = reply.withUnsafeMutableBytes { read(connection, $0.baseAddress! + got, 48 - got) }
                guard n > 0 else { throw BenchError("read from socket-echo: \(n == 0 ? "closed" : "errno \(errno)")") }
                got += n
            }
        }
    }

    static func listen(_ path: String) throws -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw BenchError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 1) == 0 else {
            close(fd)
            throw BenchError("bind/listen \(path): errno \(errno)")
        }
        return fd
    }
}

/// `strace -f -c -p PID`: attached until `finish`, which detaches it
/// (SIGINT) and reads its per-syscall summary.
struct Strace {
    let process = Process()
    let output: String

    init(pid: pid_t, output: String) throws {
        self.output = output
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["strace", "-f", "-c", "-U", "name,calls,errors", "-o", output, "-p", String(pid)]
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Attached once every thread of the process has a tracer.
        let deadline = Date().addingTimeInterval(10)
        while !Self.traced(pid) {
            guard Date() < deadline, process.isRunning else {
                throw BenchError("strace did not attach to process \(pid) (is strace installed, is ptrace allowed?)")
            }
            usleep(10_000)
        }
    }

    static func traced(_ pid: pid_t) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
        return tasks.allSatisfy { task in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("TracerPid:") })
            else { return false }
            return line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) != "0" } ?? false
        }
    }

    func finish() throws -> CostBench.Totals {
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = try String(contentsOfFile: output, encoding: .utf8)
        var totals = CostBench.Totals()
        // "name calls [errors]" rows between the two dashed lines; then "total".
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard fields.count >= 2, let calls = Int(fields[1]), fields[0] != "total", !fields[0].hasPrefix("-") else { continue }
            totals.calls[fields[0]] = calls
            totals.errors[fields[0]] = fields.count >= 3 ? Int(fields[2]) ?? 0 : 0
        }
        return totals
    }
}
