@testable import Wire
import XCTest

/// The refusal of a failed vfio-user decode, or a test failure.
func vfioUserRefusal<T>(_ result: Result<T, VFIOUserWireError>, file: StaticString = #filePath, line: UInt = #line) -> VFIOUserWireError? {
    switch result {
    case .success(let value):
        XCTFail("expected a refusal, got \(value)", file: file, line: line)
        return nil
    case .failure(let error):
        return error
    }
}

/// The decoded command, or a test failure naming the refusal.
func vfioUserCommand(_ bytes: [UInt8], limits: VFIOUserLimits = VFIOUserLimits(),
                     file: StaticString = #filePath, line: UInt = #line) -> VFIOUserCommandMessage? {
    switch VFIOUserCodec.decodeCommand(bytes, limits: limits) {
    case .success(let message): return message
    case .failure(let error):
        XCTFail("refused: \(error)", file: file, line: line)
        return nil
    }
}

/// The decoded reply, or a test failure naming the refusal.
func vfioUserReply(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> VFIOUserReplyMessage? {
    switch VFIOUserCodec.decodeReply(bytes) {
    case .success(let message): return message
    case .failure(let error):
        XCTFail("refused: \(error)", file: file, line: line)
        return nil
    }
}

/// A header built field by field from the spec's table (not by the codec).
func vfioUserHeaderBytes(id: UInt16, command: UInt16, size: UInt32, flags: UInt32 = 0, error: UInt32 = 0) -> [UInt8] {
    le(id) + le(command) + le(size) + le(flags) + le(error)
}

/// The capabilities text QEMU 11.1.3 sent in its VERSION (messages.jsonl, id 0).
let qemuVersionJSON = #"{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}"#
