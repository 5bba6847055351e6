import Posix
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import JSON

/// The config file, read and checked before `ConfigSources` serves its
/// values: the file must exist, be JSON, hold only known keys, and give each
/// key a value of the right JSON kind. The line of every key is kept so that
/// any later error about a value from the file names its line.
struct ConfigFile {
    var path: String
    /// Line of each key given in the file (dotted key → line).
    var lines: [String: Int]
    /// Each key's value, checked against its kind (dotted key → value); a
    /// null is absent, so the default applies. The file is parsed once, by
    /// our one parser, and `ConfigSources` serves these as they are.
    var values: [String: ConfigContent] = [:]

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

    /// A config nests three levels at most; 32 (the limit of the reader the
    /// shared parser replaced) leaves room and refuses a runaway file early.
    static let maximumDepth = 32

    static func load(path: String) throws(ConfigError) -> ConfigFile {
        let document = try parse(try readBytes(path), path: path)
        var file = ConfigFile(path: path, lines: [:])
        guard case .object(let members) = document.root.content else {
            throw ConfigError(key: "", message: "the top level is \(describe(document.root, in: document)); expected a JSON object { \"key\": value, … } (see docs/CONFIG.md)", source: path)
        }
        try file.check(members, prefix: "", in: document)
        return file
    }

    /// The file's text through the one JSON parser (the control socket's),
    /// which keeps every value's position for the messages below.
    static func parse(_ bytes: [UInt8], path: String) throws(ConfigError) -> JSONDocument {
        do {
            return try JSONDocument.parse(utf8: bytes, maxDepth: maximumDepth)
        } catch {
            // "Empty text" would not say which text: here it is the file.
            let text = bytes.starts(with: [0xef, 0xbb, 0xbf]) ? bytes.dropFirst(3) : bytes[...]
            let blank = text.allSatisfy { [0x20, 0x09, 0x0a, 0x0d].contains($0) }
            let message = blank ? "the file is empty; expected a JSON object" : error.message
            throw ConfigError(key: "", message: "not valid JSON at line \(error.line), column \(error.column): \(message)", source: path)
        }
    }

    private static func errnoText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }

    /// Reads the whole file. A file that was named explicitly and is missing
    /// is an error: silently running on defaults would hide a typo in --config.
    private static func readBytes(_ path: String) throws(ConfigError) -> [UInt8] {
        func fail(_ message: String) -> ConfigError { ConfigError(key: "", message: message, source: path) }
        guard !path.isEmpty else { throw fail("the config file path is empty; expected --config PATH to a JSON file") }
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path, flags: O_RDONLY)
        } catch {
            switch error.errno {
            case ENOENT: throw fail("no such file; expected an existing JSON config file (given with --config), or no --config for the built-in defaults")
            case EACCES: throw fail("permission denied; the daemon must be able to read its config file")
            default: throw fail("cannot be opened: \(errnoText(error.errno))")
            }
        }
        let info: FileStatus
        do { info = try file.status() } catch { throw fail("cannot be examined: \(errnoText(error.errno))") }
        guard info.kind == .regular else {
            throw fail(info.kind == .directory ? "is a directory; expected a JSON file" : "is not a regular file; expected a JSON file")
        }
        // A config is a few hundred bytes; anything huge is a wrong path.
        guard info.size <= 1 << 20 else { throw fail("is \(info.size) bytes; a config file is at most 1 MiB") }
        do {
            return try file.readToEnd(limit: 1 << 20)
        } catch where error.errno == EFBIG {
            throw fail("is larger than 1 MiB; a config file is at most 1 MiB")
        } catch {
            throw fail("cannot be read: \(errnoText(error.errno))")
        }
    }

    private mutating func check(_ members: [JSONMember], prefix: String, in document: JSONDocument) throws(ConfigError) {
        let known = DaemonConfig.keys.map(\.key)
        for member in members {
            let key = prefix.isEmpty ? member.name : prefix + "." + member.name
            let line = document.line(of: member.nameOffset)
            let here = "\(path), line \(line)"
            if let info = DaemonConfig.keyInfo(key) {
                // "log.level" may be written flat or nested; not both.
                if let earlier = lines[key] {
                    throw ConfigError(key: key, message: "given twice (also on line \(earlier)); keep one", source: here)
                }
                lines[key] = line
                try Self.checkKind(member.value, info: info, source: here, in: document)
                if let content = Self.content(of: member.value) { values[key] = content }
                continue
            }
            let children = known.filter { $0.hasPrefix(key + ".") }
            if !children.isEmpty {
                guard case .object(let nested) = member.value.content else {
                    let names = children.map { String($0.dropFirst(key.count + 1)) }
                    throw ConfigError(key: key, message: "is \(Self.describe(member.value, in: document)); expected an object with the keys \(names.joined(separator: ", "))", source: here)
                }
                try check(nested, prefix: key, in: document)
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

    private static func checkKind(_ node: JSONNode, info: ConfigKeyInfo, source: String, in document: JSONDocument) throws(ConfigError) {
        func fail(_ found: String) -> ConfigError {
            ConfigError(key: info.key, message: "is \(found); expected \(info.kind.expectation)", source: source)
        }
        func describe(_ node: JSONNode) -> String { Self.describe(node, in: document) }
        /// Whether the value is an integer that fits `Int` (64 bits), as the config's numbers are.
        func isInteger(_ node: JSONNode) -> Bool {
            if case .scalar(.int) = node.content { true } else { false }
        }
        // null means "not set": the default applies.
        if case .scalar(.null) = node.content { return }
        switch info.kind {
        case .string:
            guard case .scalar(.string) = node.content else { throw fail(describe(node)) }
        case .integer:
            // Digits alone that are no Int: beyond 64 bits (or above Int64.max).
            if case .scalar(let value) = node.content, value.doubleValue != nil, !isInteger(node),
               !document.text(of: node).contains(where: { ".eE".contains($0) }) {
                throw ConfigError(key: info.key, message: "\(document.text(of: node)) is too large; expected \(info.kind.expectation) within 64 bits", source: source)
            }
            guard isInteger(node) else { throw fail(describe(node)) }
        case .nameOrID:
            if case .scalar(.string) = node.content { return }
            guard isInteger(node) else { throw fail(describe(node)) }
        case .stringList:
            guard case .array(let elements) = node.content else { throw fail(describe(node)) }
            for (i, element) in elements.enumerated() {
                guard case .scalar(.string) = element.content else {
                    throw fail("an array whose entry \(i + 1) (line \(document.line(of: element.range.lowerBound))) is \(describe(element))")
                }
            }
        case .nameOrIDList:
            guard case .array(let elements) = node.content else { throw fail(describe(node)) }
            var strings = 0, integers = 0
            for (i, element) in elements.enumerated() {
                if case .scalar(.string) = element.content {
                    strings += 1
                } else if isInteger(element) {
                    integers += 1
                } else {
                    throw fail("an array whose entry \(i + 1) (line \(document.line(of: element.range.lowerBound))) is \(describe(element))")
                }
            }
            if strings > 0 && integers > 0 {
                throw ConfigError(key: info.key, message: "mixes numbers and names; expected all numbers, or all strings (write numbers as strings to mix them, e.g. [\"0\", \"qemu\"])", source: source)
            }
        }
    }

    /// The value of a checked node (nil for null). Arrays are all
    /// strings or all integers by now; an empty one is a string array, which
    /// every list lookup accepts.
    private static func content(of node: JSONNode) -> ConfigContent? {
        switch node.content {
        case .scalar(.null): return nil
        case .scalar(.string(let s)): return .string(s)
        case .scalar(let value):
            return value.int64Value.flatMap { Int(exactly: $0) }.map { .int($0) }
        case .array(let elements):
            var strings: [String] = []
            var integers: [Int] = []
            for element in elements {
                switch element.content {
                case .scalar(.string(let s)): strings.append(s)
                case .scalar(let value): if let n = value.int64Value.flatMap({ Int(exactly: $0) }) { integers.append(n) }
                default: break
                }
            }
            return integers.isEmpty ? .stringArray(strings) : .intArray(integers)
        case .object:
            return nil
        }
    }

    /// How a value is named in an error: its JSON kind and, for scalars, the
    /// value itself (a number as written).
    static func describe(_ node: JSONNode, in document: JSONDocument) -> String {
        switch node.content {
        case .object: "an object"
        case .array: "an array"
        case .scalar(.string(let s)): "the string \"\(s)\""
        case .scalar(.bool(let b)): "\(b)"
        case .scalar(.null): "null"
        case .scalar: "the number \(document.text(of: node))"
        }
    }
}
