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
