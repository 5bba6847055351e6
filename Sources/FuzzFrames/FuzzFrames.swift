// libFuzzer target: see VTdBridgeFuzzing and docs/RELIABILITY.md, "Fuzzing".
// Built with `-sanitize=fuzzer,address -DFUZZING` this file is the fuzzer's
// entry point; in a normal build its main replays files (`FuzzFrames FILE|DIR...`).
import VTdBridgeFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzDriver.fuzz(.frames, data, size)
}

#if !FUZZING
@main
enum FuzzFramesMain {
    static func main() {
        FuzzDriver.main(.frames, arguments: CommandLine.arguments)
    }
}
#endif
