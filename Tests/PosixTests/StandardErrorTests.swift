import Glibc
import Posix
import XCTest

final class StandardErrorTests: XCTestCase {
    /// Everything written reaches fd 2, bytes as given (UTF-8, no newline added).
    func testWritesTheWholeMessageToFD2() throws {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        defer { close(ends[0]) }
        let saved = dup(2)
        XCTAssertGreaterThanOrEqual(saved, 0)
        // Longer than PIPE_BUF, and not ASCII: the bytes must arrive as UTF-8, whole.
        let message = "vtdbridged: état ✓\n" + String(repeating: "x", count: 16 << 10)
        XCTAssertEqual(dup2(ends[1], 2), 2)
        close(ends[1])
        FileHandleStderr.write(message)
        XCTAssertEqual(dup2(saved, 2), 2)
        close(saved)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            XCTAssertGreaterThanOrEqual(n, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        XCTAssertEqual(received, Array(message.utf8))
    }
}
