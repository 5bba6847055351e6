import Configuration
import Synchronization

/// The three sources of configuration, as swift-configuration providers in
/// priority order, read through one ConfigReader:
///
/// 1. command-line flags: an InMemoryProvider built from `overrides`;
/// 2. the environment: an EnvironmentVariablesProvider under the key prefix
///    "vtdbridge", so that key "log.level" is `VTDBRIDGE_LOG_LEVEL`;
/// 3. the JSON config file, parsed and checked by `ConfigFile` and served
///    by an InMemoryProvider.
///
/// The first provider that has a key decides its value; lists are never
/// merged across sources. The reader's access reporter tells which provider
/// decided, so that every error can name the flag, the variable or the file
/// line the bad value came from.
struct ConfigSources {
    struct Found {
        var content: ConfigContent
        /// The flag, environment variable, or "file, line N".
        var source: String
    }

    enum Origin {
        case flags
        case environment
        case file(ConfigFile)
    }

    let reader: ConfigReader
    let recorder: ConfigLookupRecorder
    /// One per provider, in the reader's order.
    let origins: [Origin]
    let environment: [String: String]
    let overrides: [String: String]

    static func make(file: String?, environment: [String: String], overrides: [String: String]) throws(ConfigError) -> ConfigSources {
        var providers: [any ConfigProvider] = []
        var origins: [Origin] = []

        providers.append(InMemoryProvider(name: "flags", values: try flagValues(overrides)))
        origins.append(.flags)

        try checkEnvironment(environment)
        // Lists in the environment are separated by whitespace (device specs
        // contain commas); `splitList` also splits id lists at commas.
        providers.append(EnvironmentVariablesProvider(environmentVariables: environment, arraySeparator: " ")
            .prefixKeys(with: ConfigKey(["vtdbridge"])))
        origins.append(.environment)

        if let file {
            let checked = try ConfigFile.load(path: file)
            var values: [AbsoluteConfigKey: ConfigValue] = [:]
            for (key, content) in checked.values { values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(content, isSecret: false) }
            providers.append(InMemoryProvider(name: file, values: values))
            origins.append(.file(checked))
        }

        let recorder = ConfigLookupRecorder()
        return ConfigSources(
            reader: ConfigReader(providers: providers, accessReporter: recorder),
            recorder: recorder,
            origins: origins,
            environment: environment,
            overrides: overrides)
    }

    /// The value of `info`'s key from the highest-priority source that has
    /// it, read as the first of `types` that this source's value converts to
    /// (a JSON [0, 1000] is an .intArray, not a .stringArray). Nil when no
    /// source has the key.
    func lookup(_ info: ConfigKeyInfo, as types: [ConfigType]) throws(ConfigError) -> Found? {
        let key = ConfigKey(info.key)
        for (attempt, type) in types.enumerated() {
            // The lenient getters never throw; the reporter sees each
            // provider's answer, including a conversion failure.
            switch type {
            case .string: _ = reader.string(forKey: key)
            case .int: _ = reader.int(forKey: key)
            case .stringArray: _ = reader.stringArray(forKey: key)
            case .intArray: _ = reader.intArray(forKey: key)
            default: preconditionFailure("config type \(type) is not used")
            }
            guard let event = recorder.takeLast(), let decisive = event.providerResults.last else {
                return nil
            }
            let origin = origins[event.providerResults.count - 1]
            switch decisive.result {
            case .success(let result):
                guard let value = result.value else { return nil }
                return Found(content: value.content, source: source(origin, info))
            case .failure:
                if attempt < types.count - 1 { continue }
                let raw: String? = switch origin {
                case .flags: overrides[info.key]
                case .environment: environment[info.environmentVariable]
                case .file: nil
                }
                let what = raw.map { "\"\($0)\"" } ?? "the value"
                throw ConfigError(key: info.key, message: "\(what) is not \(info.kind.expectation); expected \(info.expected)",
                                  source: source(origin, info))
            }
        }
        return nil
    }

    func source(_ origin: Origin, _ info: ConfigKeyInfo) -> String {
        switch origin {
        case .flags: info.flag
        case .environment: info.environmentVariable
        case .file(let file): file.source(of: info.key)
        }
    }

    /// List items from the environment or a flag: whitespace separates
    /// items; in id lists commas do too. Empty items are dropped, so an empty
    /// value is an empty list.
    static func splitList(_ items: [String], kind: ConfigValueKind) -> [String] {
        items.flatMap { item in
            item.split(whereSeparator: { $0.isWhitespace || (kind == .nameOrIDList && $0 == ",") }).map(String.init)
        }
    }

    /// The flag values as typed config values. Keys are config keys; values
    /// are the flag's text (a repeated flag: items joined by spaces).
    private static func flagValues(_ overrides: [String: String]) throws(ConfigError) -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, raw) in overrides.sorted(by: { $0.key < $1.key }) {
            guard let info = DaemonConfig.keyInfo(key) else {
                var message = "unknown key passed from the command line"
                if let suggestion = DaemonConfig.closestKey(to: key) { message += "; did you mean \"\(suggestion)\"?" }
                message += " Known keys: \(DaemonConfig.keys.map(\.key).joined(separator: ", "))"
                throw ConfigError(key: key, message: message, source: "command line")
            }
            let content: ConfigContent
            switch info.kind {
            case .string, .nameOrID:
                content = .string(raw)
            case .integer:
                guard let number = Int(ConfigText.trim(raw)) else {
                    throw ConfigError(key: key, message: "\"\(raw)\" is not a whole number; expected \(info.expected)", source: info.flag)
                }
                content = .int(number)
            case .stringList, .nameOrIDList:
                content = .stringArray(splitList([raw], kind: info.kind))
            }
            values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(content, isSecret: false)
        }
        return values
    }

    /// Every VTDBRIDGE_ variable must name a key: a misspelt variable would
    /// otherwise be ignored without a word.
    private static func checkEnvironment(_ environment: [String: String]) throws(ConfigError) {
        let known = DaemonConfig.keys.map(\.environmentVariable)
        for name in environment.keys.sorted() where name.hasPrefix(DaemonConfig.environmentPrefix) && !known.contains(name) {
            var message = "unknown environment variable: every \(DaemonConfig.environmentPrefix) variable must name a config key"
            if let suggestion = DaemonConfig.closestKey(to: name, among: known),
               let info = DaemonConfig.keys.first(where: { $0.environmentVariable == suggestion }) {
                message += "; did you mean \(suggestion) (key \"\(info.key)\")?"
            }
            throw ConfigError(key: name, message: message, source: "environment")
        }
    }
}

/// Keeps the access events of the ConfigReader, so that a lookup can tell
/// which provider answered.
final class ConfigLookupRecorder: AccessReporter {
    private let events = Mutex<[AccessEvent]>([])

    func report(_ event: AccessEvent) {
        events.withLock { $0.append(event) }
    }

    func takeLast() -> AccessEvent? {
        events.withLock { $0.popLast() }
    }
}
