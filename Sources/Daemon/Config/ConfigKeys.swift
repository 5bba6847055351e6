import Logging
import VTd

/// The JSON kind a key's value must have, and how list values are written in
/// environment variables and flags.
enum ConfigValueKind: Sendable, Equatable {
    /// A JSON string.
    case string
    /// A JSON integer (no fraction, no exponent, not a boolean).
    case integer
    /// A JSON string or integer: a group name or a numeric gid.
    case nameOrID
    /// A JSON array of strings. In the environment and in flags: items
    /// separated by whitespace (device specs contain commas).
    case stringList
    /// A JSON array of names or numeric ids, all strings or all integers. In
    /// the environment and in flags: items separated by whitespace or commas.
    case nameOrIDList

    var expectation: String {
        switch self {
        case .string: "a string"
        case .integer: "a whole number"
        case .nameOrID: "a name (string) or a numeric id"
        case .stringList: "an array of strings"
        case .nameOrIDList: "an array of names (strings) or of numeric ids"
        }
    }
}

/// One configuration key: its name in the JSON file, the environment
/// variable and the command-line flag that can set it, and what it means.
public struct ConfigKeyInfo: Sendable, Equatable {
    /// The key, dotted for nested JSON objects: "control.socket" is
    /// `{"control": {"socket": …}}`.
    public let key: String
    /// The environment variable: `VTDBRIDGE_` + the key upper-cased with
    /// every character that is not a letter or digit replaced by `_`.
    public let environmentVariable: String
    /// The vtdbridged flag that sets it (the executable passes flag values to
    /// `DaemonConfig.load(overrides:)` under `key`).
    public let flag: String
    /// One line on what the key means.
    public let summary: String
    /// What a valid value looks like, as error messages say it.
    public let expected: String
    let kind: ConfigValueKind

    init(_ key: String, _ kind: ConfigValueKind, flag: String? = nil, expected: String, _ summary: String) {
        self.key = key
        self.kind = kind
        self.expected = expected
        self.environmentVariable = DaemonConfig.environmentVariable(forKey: key)
        self.flag = flag ?? "--" + String(key.map { $0 == "." ? "-" : $0 })
        self.summary = summary
    }
}


extension DaemonConfig {
    /// Prefix of every environment variable the daemon reads.
    public static let environmentPrefix = "VTDBRIDGE_"

    /// Every key, in the order docs/CONFIG.md lists them.
    public static let keys: [ConfigKeyInfo] = [
        .init("name", .string,
              expected: "1 to 64 characters from A-Z a-z 0-9 _ . - (not \".\" or \"..\")",
              "instance name, used in the default paths"),
        .init("event-socket", .string,
              expected: "an absolute path of at most 107 bytes (the Unix socket address limit)",
              "path of the event-channel socket (the VMM connects here)"),
        .init("control.socket", .string,
              expected: "an absolute path of at most 107 bytes (the Unix socket address limit)",
              "path of the control socket (JSON lines)"),
        .init("control.group", .nameOrID,
              expected: "a group name or a numeric gid",
              "group owning both sockets, which get mode 0660"),
        .init("control.max-clients", .integer,
              expected: "a whole number from 1 to \(DaemonConfig.maximumClientsLimit)",
              "most control-socket clients connected at once"),
        .init("access.uids", .nameOrIDList,
              expected: "user names or numeric uids",
              "peer uids allowed on both sockets"),
        .init("access.gids", .nameOrIDList,
              expected: "group names or numeric gids",
              "peer gids allowed on both sockets"),
        .init("state-directory", .string,
              expected: "an absolute path",
              "where attachments are recorded across restarts"),
        .init("log.level", .string,
              expected: "one of " + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "),
              "least severe level logged"),
        .init("backend", .string,
              expected: "vfio or dry-run",
              "vfio (real containers) or dry-run (maps nothing, records what it would do)"),
        .init("vfio.device-directory", .string,
              expected: "an absolute path",
              "directory of the VFIO nodes (vfio, and one per group)"),
        .init("vfio.sysfs", .string,
              expected: "an absolute path",
              "sysfs mount point, for IOMMU groups and PCI devices"),
        .init("devices", .stringList, flag: "--device",
              expected: "entries HOST=GUEST[,quota=N]",
              "devices attached at start"),
        .init("mapping-quota", .integer,
              expected: "a whole number ≥ 0 (0: no limit)",
              "default most mappings per device"),
        .init("walk-budget", .integer,
              expected: "a whole number ≥ \(WalkBudget.minimumEntries)",
              "most guest paging entries one sync of one device may read"),
        .init("event-busy-poll-us", .integer,
              expected: "a whole number of microseconds from 0 to 10000 (0: off)",
              "after each VMM request, poll the event socket without sleeping for this long"),
        .init("metrics.textfile", .string,
              expected: "an absolute path ending in .prom",
              "file the metrics are written to for node_exporter's textfile collector (off when unset)"),
        .init("metrics.interval", .integer,
              expected: "a whole number of seconds from 1 to 3600",
              "seconds between two writes of metrics.textfile"),
    ]

    /// The environment variable for a key: the key prefixed with
    /// "vtdbridge", upper-case, and `_` for every `.`, `-` or other
    /// non-alphanumeric character (the rule of swift-configuration's
    /// EnvironmentVariablesProvider, which the daemon used to read them). "log.level" → `VTDBRIDGE_LOG_LEVEL`.
    public static func environmentVariable(forKey key: String) -> String {
        environmentPrefix + String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// How a flag that may be repeated (`--device`, `--access-uids`) passes its
    /// values in `overrides`: one string, items separated by spaces.
    public static func overrideValue(list: [String]) -> String {
        list.joined(separator: " ")
    }

    static func keyInfo(_ key: String) -> ConfigKeyInfo? {
        keys.first { $0.key == key }
    }

    /// The known key closest to `unknown`: a key whose last component is the
    /// same ("socket" → "control.socket"), else the smallest edit distance.
    static func closestKey(to unknown: String, among candidates: [String] = keys.map(\.key)) -> String? {
        let lastComponent = unknown.split(separator: ".").last.map(String.init) ?? unknown
        let sameLeaf = candidates.filter { $0.split(separator: ".").last.map(String.init) == lastComponent }
        if sameLeaf.count == 1 { return sameLeaf[0] }
        return candidates.min { ConfigText.editDistance(unknown, $0) < ConfigText.editDistance(unknown, $1) }
    }
}

/// Small text helpers for the config code, kept in one namespace so that
/// they cannot collide with other files of the Daemon module.
enum ConfigText {
    /// The text without leading and trailing whitespace.
    static func trim<S: StringProtocol>(_ text: S) -> String {
        var s = Substring(text)
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return String(s)
    }

    /// Non-empty and only ASCII digits (no sign, no spaces).
    static func isDecimal<S: StringProtocol>(_ text: S) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// Levenshtein distance over characters, case-insensitive.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
