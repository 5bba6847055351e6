#if canImport(Glibc)
import Glibc
#endif

/// What the fuzz executables do: the libFuzzer entry point's body, and,
/// in a normal build (no `-DFUZZING`), a `main` that replays files.
public enum FuzzDriver {
    /// The body of `LLVMFuzzerTestOneInput`: runs the input and traps with the
    /// broken invariant's description, which libFuzzer reports as a crash and
    /// saves the input for.
    public static func fuzz(_ target: FuzzTarget, _ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = UnsafeRawBufferPointer(start: size == 0 ? nil : data, count: size)
        if case let .failed(why) = target.run(bytes) {
            fatalError("\(target.rawValue): invariant broken: \(why)")
        }
        return 0
    }

    /// `FuzzX FILE|DIR...` replays every file through the harness and exits 1
    /// if any breaks an invariant; `FuzzX --write-seeds DIR` writes the seed
    /// corpus. Used by `make fuzz-regress` and to reproduce a crash without
    /// the fuzzer.
    public static func main(_ target: FuzzTarget, arguments: [String]) -> Never {
        var args = Array(arguments.dropFirst())
        if args.first == "--write-seeds", args.count == 2 {
            let dir = args[1]
            var prefix = dir.hasPrefix("/") ? "/" : ""
            for part in dir.split(separator: "/") {
                prefix += part + "/"
                mkdir(prefix, 0o755)
            }
            var total = 0
            for seed in target.seeds {
                let path = dir + "/" + seed.name
                guard let file = fopen(path, "wb") else { fail("cannot write \(path)") }
                _ = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
                total += seed.bytes.count
                if case let .failed(why) = target.run(seed.bytes) { fail("seed \(seed.name) breaks an invariant: \(why)") }
            }
            print("\(target.rawValue): wrote \(target.seeds.count) seeds (\(total) bytes) to \(dir)")
            exit(0)
        }
        if args.isEmpty || args.first?.hasPrefix("-") == true {
            print("usage: \(target.rawValue) FILE|DIR...   replay inputs (exit 1 if one breaks an invariant)")
            print("       \(target.rawValue) --write-seeds DIR")
            print("(built with -sanitize=fuzzer -DFUZZING, this is a libFuzzer binary: see docs/RELIABILITY.md)")
            exit(args.isEmpty ? 2 : 0)
        }
        SyncFuzzer.trace = getenv("FUZZ_TRACE").map { String(cString: $0) == "1" } ?? false
        if let off = getenv("FUZZ_NO_WALK_BUDGET") { SyncFuzzer.walkBudget = String(cString: off) != "1" }
        var files: [String] = []
        while let path = args.popLast() { files += listFiles(path) }
        files.sort()
        var failed = 0
        let start = clock_ns()
        var slowest: [(ns: UInt64, path: String)] = []
        for path in files {
            guard let bytes = readFile(path) else { fail("cannot read \(path)") }
            let t0 = clock_ns()
            if case let .failed(why) = target.run(bytes) {
                failed += 1
                print("FAILED \(path): \(why)")
            }
            slowest.append((clock_ns() - t0, path))
        }
        let ms = (clock_ns() - start) / 1_000_000
        print("\(target.rawValue): \(files.count - failed) passed, \(failed) failed (\(files.count) inputs, \(ms) ms)")
        if files.count > 1 {
            let top = slowest.sorted { $0.ns > $1.ns }.prefix(3).map { "\($0.path) \($0.ns / 1000) µs" }
            print("slowest: \(top.joined(separator: ", "))")
        }
        exit(failed == 0 ? 0 : 1)
    }

    static func fail(_ message: String) -> Never {
        print("error: \(message)")
        exit(2)
    }

    static func clock_ns() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The regular files at `path` (itself, or the files in a directory,
    /// recursively), hidden files excluded.
    public static func listFiles(_ path: String) -> [String] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        guard st.st_mode & S_IFMT == S_IFDIR else { return st.st_mode & S_IFMT == S_IFREG ? [path] : [] }
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            out += listFiles(path + "/" + name)
        }
        return out.sorted()
    }

    public static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[0 ..< n]
        }
        return bytes
    }
}
