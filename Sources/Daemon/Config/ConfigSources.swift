/// The three sources of configuration, in priority order:
///
/// 1. command-line flags: `overrides`, typed here by each key's kind;
/// 2. the environment: `VTDBRIDGE_…` variables, text read as the type a
///    lookup asks for;
/// 3. the JSON config file, parsed and checked by `ConfigFile`.
///
/// The first source that has a key decides its value, alone: lists are
/// never merged across sources, and a value the deciding source cannot give
/// as the type asked for is an error naming that source, not a reason to ask
/// the next one. Every error names the flag, the variable or the file line
/// the bad value came from.
///
/// Our own merge, not swift-configuration's ConfigReader: it is the only
/// thing the daemon used it for, and the library brought FoundationEssentials
/// and ~0.5 MiB of code into an executable whose idle footprint is counted
/// (issue 14). The rules are the ones its providers applied (in-memory values
/// convert only to their own type; an environment list is split at each
/// space and each item trimmed), so no config means something new.
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

    /// The flag values, keyed by config key.
    let flags: [String: ConfigContent]
    let file: ConfigFile?
    let environment: [String: String]
    let overrides: [String: String]

    static func make(file: String?, environment: [String: String], overrides: [String: String]) throws(ConfigError) -> ConfigSources {
        let flags = try flagValues(overrides)
        try checkEnvironment(environment)
        var checked: ConfigFile?
        if let file { checked = try ConfigFile.load(path: file) }
        return ConfigSources(flags: flags, file: checked, environment: environment, overrides: overrides)
    }

    /// The value of `info`'s key from the highest-priority source that has
    /// it, read as the first of `types` that this source's value converts to
    /// (a JSON [0, 1000] is an .intArray, not a .stringArray). Nil when no
    /// source has the key.
    func lookup(_ info: ConfigKeyInfo, as types: [ConfigType]) throws(ConfigError) -> Found? {
        let origin: Origin
        if flags[info.key] != nil {
            origin = .flags
        } else if environment[info.environmentVariable] != nil {
            origin = .environment
        } else if let file, file.values[info.key] != nil {
            origin = .file(file)
        } else {
            return nil
        }
        for type in types {
            if let content = value(of: info, in: origin, as: type) {
                return Found(content: content, source: source(origin, info))
            }
        }
        let raw: String? = switch origin {
        case .flags: overrides[info.key]
        case .environment: environment[info.environmentVariable]
        case .file: nil
        }
        let what = raw.map { "\"\($0)\"" } ?? "the value"
        throw ConfigError(key: info.key, message: "\(what) is not \(info.kind.expectation); expected \(info.expected)",
                          source: source(origin, info))
    }

    /// What `origin` holds for the key, as `type`; nil if it does not
    /// convert. Flag and file values are typed already and are only what
    /// they are; an environment variable is text, parsed as asked.
    private func value(of info: ConfigKeyInfo, in origin: Origin, as type: ConfigType) -> ConfigContent? {
        let typed: ConfigContent?
        switch origin {
        case .flags: typed = flags[info.key]
        case .file(let file): typed = file.values[info.key]
        case .environment: return environment[info.environmentVariable].flatMap { Self.parse($0, as: type) }
        }
        return typed.flatMap { $0.type == type ? $0 : nil }
    }

    /// An environment variable's text as `type`. Numbers are whole decimal
    /// numbers with no space around them (`Int.init`); lists are split at
    /// every space with each item trimmed, empty items kept for
    /// `splitList` to drop.
    static func parse(_ text: String, as type: ConfigType) -> ConfigContent? {
        switch type {
        case .string:
            return .string(text)
        case .int:
            return Int(text).map { .int($0) }
        case .stringArray:
            return .stringArray(items(text))
        case .intArray:
            var numbers: [Int] = []
            for item in items(text) {
                guard let number = Int(item) else { return nil }
                numbers.append(number)
            }
            return .intArray(numbers)
        }
    }

    private static func items(_ text: String) -> [String] {
        text.split(separator: " ", omittingEmptySubsequences: false).map { ConfigText.trim($0) }
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
    private static func flagValues(_ overrides: [String: String]) throws(ConfigError) -> [String: ConfigContent] {
        var values: [String: ConfigContent] = [:]
        for (key, raw) in overrides.sorted(by: { $0.key < $1.key }) {
            guard let info = DaemonConfig.keyInfo(key) else {
                var message = "unknown key passed from the command line"
                if let suggestion = DaemonConfig.closestKey(to: key) { message += "; did you mean \"\(suggestion)\"?" }
                message += " Known keys: \(DaemonConfig.keys.map(\.key).joined(separator: ", "))"
                throw ConfigError(key: key, message: message, source: "command line")
            }
            switch info.kind {
            case .string, .nameOrID:
                values[key] = .string(raw)
            case .integer:
                guard let number = Int(ConfigText.trim(raw)) else {
                    throw ConfigError(key: key, message: "\"\(raw)\" is not a whole number; expected \(info.expected)", source: info.flag)
                }
                values[key] = .int(number)
            case .stringList, .nameOrIDList:
                values[key] = .stringArray(splitList([raw], kind: info.kind))
            }
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
