// libFuzzer target: see VTdBridgeFuzzing and docs/RELIABILITY.md, "Fuzzing".
// Built with `-sanitize=fuzzer,address -DFUZZING` this file is the fuzzer's
// entry point; in a normal build its main replays files (`FuzzVFIOUser FILE|DIR...`).
import VTdBridgeFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzDriver.fuzz(.vfioUser, data, size)
}

#if !FUZZING
@main
enum FuzzVFIOUserMain {
    static func main() {
        FuzzDriver.main(.vfioUser, arguments: CommandLine.arguments)
    }
}
#endif
