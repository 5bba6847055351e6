/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny generator whose output
/// is fully specified by its 64-bit state, so a seed names the same sequence
/// on every machine and Swift version. Simulated guests (the kill-soak), the
/// fuzz harnesses and the randomized tests draw from it, and print the seed
/// that reproduces a failure.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The draws built on it, here once so that a seed means the same choices
/// wherever it is used. They use only `next()`, never the standard library's
/// random algorithms, which may change between Swift versions.
extension SplitMix64 {
    /// Uniform in 0..<n (n > 0). n == 1 draws nothing. Otherwise the value is
    /// `next() % n`, drawn again in the rare case (below n / 2^64) that
    /// `next()` falls in the last, incomplete copy of 0..<n: the fuzz
    /// harnesses' committed seeds were made with the plain modulo, which this
    /// equals except in that case.
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0, "below(\(n)): the range is empty")
        if n == 1 { return 0 }
        let bound = UInt64(n)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let v = next()
            if v < limit { return Int(v % bound) }
        }
    }

    /// Uniform in `r`.
    public mutating func inRange(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }

    /// Uniform in [0, 1), in steps of 2^-53 (a Double's precision).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// One element of `a`, or nil if it is empty.
    public mutating func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[below(a.count)] }

    /// Fisher–Yates, from the last element down.
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }
}
