#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The config file, read and checked before swift-configuration reads its
/// values: the file must exist, be JSON, hold only known keys, and give each
/// key a value of the right JSON kind. The line of every key is kept so that
/// any later error about a value from the file names its line.
struct ConfigFile {
    var path: String
    /// Line of each key given in the file (dotted key → line).
    var lines: [String: Int]

    /// The section names ("control", "access", "log", "vfio").
    static let sections: [String] = {
        var seen: [String] = []
        for key in DaemonConfig.keys.map(\.key) {
            var prefix = ""
            for component in key.split(separator: ".").dropLast() {
                prefix = prefix.isEmpty ? String(component) : prefix + "." + component
                if !seen.contains(prefix) { seen.append(prefix) }
            }
        }
        return seen
    }()

    /// Where an error about `key` should say the value came from.
    func source(of key: String) -> String {
        lines[key].map { "\(path), line \($0)" } ?? path
    }

    static func load(path: String) throws(ConfigError) -> ConfigFile {
        let bytes = try readBytes(path)
        let root: ConfigJSON.Node
        do {
            root = try ConfigJSON.parse(bytes)
        } catch {
            throw ConfigError(key: "", message: "not valid JSON at line \(error.line), column \(error.column): \(error.message)", source: path)
        }
        var file = ConfigFile(path: path, lines: [:])
        guard case .object(let members) = root.value else {
            throw ConfigError(key: "", message: "the top level is \(root.value.errorDescription); expected a JSON object { \"key\": value, … } (see docs/CONFIG.md)", source: path)
        }
        try file.check(members, prefix: "")
        return file
    }

    /// Reads the whole file. A file that was named explicitly and is missing
    /// is an error: silently running on defaults would hide a typo in --config.
    private static func readBytes(_ path: String) throws(ConfigError) -> [UInt8] {
        func fail(_ message: String) -> ConfigError { ConfigError(key: "", message: message, source: path) }
        guard !path.isEmpty else { throw fail("the config file path is empty; expected --config PATH to a JSON file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            switch code {
            case ENOENT: throw fail("no such file; expected an existing JSON config file (given with --config), or no --config for the built-in defaults")
            case EACCES: throw fail("permission denied; the daemon must be able to read its config file")
            default: throw fail("cannot be opened: \(String(cString: strerror(code))) (errno \(code))")
            }
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            throw fail("cannot be examined: \(String(cString: strerror(code))) (errno \(code))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw fail((info.st_mode & S_IFMT) == S_IFDIR ? "is a directory; expected a JSON file" : "is not a regular file; expected a JSON file")
        }
        // A config is a few hundred bytes; anything huge is a wrong path.
        guard info.st_size <= 1 << 20 else { throw fail("is \(info.st_size) bytes; a config file is at most 1 MiB") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw fail("cannot be read: \(String(cString: strerror(code))) (errno \(code))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > 1 << 20 { throw fail("is larger than 1 MiB; a config file is at most 1 MiB") }
        }
        return bytes
    }

    private mutating func check(_ members: [ConfigJSON.Member], prefix: String) throws(ConfigError) {
        let known = DaemonConfig.keys.map(\.key)
        for member in members {
            let key = prefix.isEmpty ? member.key : prefix + "." + member.key
            let here = "\(path), line \(member.line)"
            if let info = DaemonConfig.keyInfo(key) {
                // "log.level" may be written flat or nested; not both.
                if let earlier = lines[key] {
                    throw ConfigError(key: key, message: "given twice (also on line \(earlier)); keep one", source: here)
                }
                lines[key] = member.line
                try Self.checkKind(member.node, info: info, source: here)
                continue
            }
            let children = known.filter { $0.hasPrefix(key + ".") }
            if !children.isEmpty {
                guard case .object(let nested) = member.node.value else {
                    let names = children.map { String($0.dropFirst(key.count + 1)) }
                    throw ConfigError(key: key, message: "is \(member.node.value.errorDescription); expected an object with the keys \(names.joined(separator: ", "))", source: here)
                }
                try check(nested, prefix: key)
                continue
            }
            var message = "unknown key"
            if let suggestion = DaemonConfig.closestKey(to: key, among: known + Self.sections) {
                message += "; did you mean \"\(suggestion)\"?"
            }
            message += " Known keys: \(known.joined(separator: ", "))"
            throw ConfigError(key: key, message: message, source: here)
        }
    }

    private static func checkKind(_ node: ConfigJSON.Node, info: ConfigKeyInfo, source: String) throws(ConfigError) {
        func fail(_ found: String) -> ConfigError {
            ConfigError(key: info.key, message: "is \(found); expected \(info.kind.expectation)", source: source)
        }
        // null means "not set": the default applies (as swift-configuration reads it).
        if case .null = node.value { return }
        switch info.kind {
        case .string:
            guard case .string = node.value else { throw fail(node.value.errorDescription) }
        case .integer:
            if case .number(_, let text) = node.value, !text.contains(where: { ".eE".contains($0) }) {
                throw ConfigError(key: info.key, message: "\(text) is too large; expected \(info.kind.expectation) within 64 bits", source: source)
            }
            guard case .integer = node.value else { throw fail(node.value.errorDescription) }
        case .nameOrID:
            switch node.value {
            case .string, .integer: break
            default: throw fail(node.value.errorDescription)
            }
        case .stringList:
            guard case .array(let elements) = node.value else { throw fail(node.value.errorDescription) }
            for (i, element) in elements.enumerated() {
                guard case .string = element.value else {
                    throw fail("an array whose entry \(i + 1) (line \(element.line)) is \(element.value.errorDescription)")
                }
            }
        case .nameOrIDList:
            guard case .array(let elements) = node.value else { throw fail(node.value.errorDescription) }
            var strings = 0, integers = 0
            for (i, element) in elements.enumerated() {
                switch element.value {
                case .string: strings += 1
                case .integer: integers += 1
                default: throw fail("an array whose entry \(i + 1) (line \(element.line)) is \(element.value.errorDescription)")
                }
            }
            if strings > 0 && integers > 0 {
                throw ConfigError(key: info.key, message: "mixes numbers and names; expected all numbers, or all strings (write numbers as strings to mix them, e.g. [\"0\", \"qemu\"])", source: source)
            }
        }
    }
}
