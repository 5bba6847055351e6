/// A config value as one source gives it: the four shapes the daemon's keys
/// take (a file's JSON is checked into one of them by `ConfigFile`, a flag's
/// text by the key's kind, an environment variable's on lookup).
enum ConfigContent: Equatable, Sendable {
    case string(String)
    case int(Int)
    case stringArray([String])
    case intArray([Int])

    var type: ConfigType {
        switch self {
        case .string: .string
        case .int: .int
        case .stringArray: .stringArray
        case .intArray: .intArray
        }
    }
}

/// The shape a lookup asks a source for (`ConfigSources.lookup`).
enum ConfigType: Equatable, Sendable {
    case string, int, stringArray, intArray
}
