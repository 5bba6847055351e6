import VTd
import VTdGuest

// Shared pieces of the fuzz harnesses (docs/RELIABILITY.md, "Fuzzing"): the
// outcome of one input, a byte reader, and a deterministic chunker.

/// What one input did to a harness.
public enum FuzzOutcome: Sendable, Equatable, CustomStringConvertible {
    /// Every invariant held.
    case ok
    /// An invariant was broken; the message says which and how.
    case failed(String)

    public var description: String {
        switch self {
        case .ok: "ok"
        case let .failed(why): "FAILED: \(why)"
        }
    }
}

/// A broken invariant, thrown to end the run at the first one.
struct Violation: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Throws a `Violation` unless `condition` holds.
@inline(__always)
func check(_ condition: Bool, _ message: @autoclosure () -> String) throws(Violation) {
    if !condition { throw Violation(message()) }
}

/// Reads a fuzz input front to back. Reads past the end return nil, so a
/// short input simply ends the program it encodes.
struct FuzzReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset >= bytes.count }

    mutating func u8() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// A byte, or `fallback` past the end (for fixed-size headers).
    mutating func u8(or fallback: UInt8) -> UInt8 { u8() ?? fallback }

    mutating func u16() -> UInt16? { integer(UInt16.self) }
    mutating func u64() -> UInt64? { integer(UInt64.self) }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { return nil }
        var value: T = 0
        for i in 0 ..< size { value |= T(bytes[offset + i]) << (8 * i) }
        offset += size
        return value
    }

    /// The rest of the input.
    mutating func rest() -> UnsafeRawBufferPointer {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[min(offset, bytes.count)...])
        offset = bytes.count
        return slice
    }
}

/// Cuts a byte stream into the pieces a socket's reads might return, chosen
/// by one byte of the input: whole, one byte at a time, or pseudo-random
/// sizes (mostly small, sometimes large, sometimes empty reads). The sizes
/// come from SplitMix64's `below` (VTdGuest), which the committed seeds
/// were generated with.
struct Chunker {
    private var rng: SplitMix64
    private let mode: UInt8

    init(selector: UInt8) {
        mode = selector & 7
        rng = SplitMix64(seed: UInt64(selector) &* 0x1000_0001)
    }

    /// The size of the next read; `remaining` > 0. May be 0 (a read that
    /// returned only descriptors) in the random modes.
    mutating func next(remaining: Int) -> Int {
        switch mode {
        case 0: return remaining
        case 1: return 1
        case 2: return min(remaining, 1 + rng.below(4))
        case 3: return min(remaining, 16 + rng.below(17) - 8)
        case 4: return min(remaining, rng.below(8) == 0 ? 0 : 1 + rng.below(64))
        case 5: return min(remaining, rng.below(4) == 0 ? remaining : 1 + rng.below(24))
        default: return min(remaining, 1 + rng.below(max(1, remaining)))
        }
    }
}

/// Runs `body` over a copy of `bytes` in an allocation of exactly that size,
/// so AddressSanitizer sees any read past its end (Array storage often has
/// slack capacity that would hide one).
func withExactCopy<R>(_ bytes: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) throws(Violation) -> R) throws(Violation) -> R {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 0), alignment: 1)
    defer { buffer.deallocate() }
    _ = buffer.initializeMemory(as: UInt8.self, from: bytes)
    return try body(UnsafeRawBufferPointer(start: bytes.isEmpty ? nil : buffer.baseAddress, count: bytes.count))
}

func hexBytes(_ bytes: some Sequence<UInt8>, limit: Int = 64) -> String {
    var out = ""
    for (i, b) in bytes.enumerated() {
        if i == limit { out += "…"; break }
        out += (b < 16 ? "0" : "") + String(b, radix: 16)
    }
    return out
}
