@testable import Wire
import VTdGuest
import XCTest

/// The payload of a frame built by `EventCodec` (everything after the header).
func payload(of frame: [UInt8]) -> [UInt8] { Array(frame[FrameHeader.size...]) }

/// Decodes a request frame built by hand or by `encodeRequest`: header then payload.
func decodeFrame(_ frame: [UInt8], fdCount: Int = 0) -> Result<EventRequest, WireError> {
    let header = FrameHeader.decode(frame[0 ..< FrameHeader.size])
    XCTAssertEqual(Int(header.length), frame.count - FrameHeader.size, "header length disagrees with the frame")
    return EventCodec.decodeRequest(type: header.type, payload: payload(of: frame), fdCount: fdCount)
}

/// The error of a failed decode, or a test failure.
func failure<T>(_ result: Result<T, WireError>, file: StaticString = #filePath, line: UInt = #line) -> WireError? {
    switch result {
    case .success(let value):
        XCTFail("expected a failure, got \(value)", file: file, line: line)
        return nil
    case .failure(let error):
        return error
    }
}

/// Little-endian bytes of an integer, for building payloads in tests.
func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
