/// The binary codec of the event channel (PROTOCOL.md §1): requests and
/// replies to and from bytes. No I/O, no Foundation; the framing of a byte
/// stream is `FrameDecoder`'s.
///
/// Payload parameters are `UnsafeRawBufferPointer` (what a receive buffer
/// hands out without a copy), with `[UInt8]` overloads for `FrameDecoder.Frame`
/// payloads and tests.
public enum EventCodec {}
