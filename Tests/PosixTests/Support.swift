import Foundation
import Glibc
import Posix
import XCTest

/// Runs a throwing call that must fail and returns its error.
func expectError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> SystemError? {
    do {
        let value = try body()
        XCTFail("expected a SystemError, got \(value)", file: file, line: line)
    } catch let error as SystemError {
        return error
    } catch {
        XCTFail("expected a SystemError, got \(error)", file: file, line: line)
    }
    return nil
}

/// Whether `fd` is an open descriptor in this process.
func isOpen(_ fd: Int32) -> Bool {
    fcntl(fd, F_GETFD) >= 0
}

/// A pipe as (read end, write end), both close-on-exec.
func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(pipe(&fds) == 0, "pipe failed")
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

/// A fresh directory under /tmp, removed (with what is in it, one level
/// deep) when the test ends.
final class ScratchDirectory {
    let path: String

    init() {
        var template = Array("/tmp/posix-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { removeTree(path) }

    private func removeTree(_ path: String) {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                let child = path + "/" + name
                if unlink(child) != 0 { removeTree(child) }
            }
            closedir(directory)
        }
        rmdir(path)
    }
}

/// A closer that records every number it is asked to close and answers
/// with scripted results (0 when the script is empty). Thread-safe.
final class RecordingCloser: @unchecked Sendable {
    // @unchecked: every field is behind `lock`.
    private let lock = NSLock()
    private var _closed: [Int32] = []
    private var _results: [Int32] = []

    var closed: [Int32] { lock.withLock { _closed } }

    func script(_ results: [Int32]) { lock.withLock { _results = results } }

    /// The closer to give a FileDescriptor: it closes nothing real.
    var close: FileDescriptor.Closer {
        { [self] fd in
            lock.withLock {
                _closed.append(fd)
                return _results.isEmpty ? 0 : _results.removeFirst()
            }
        }
    }
}
