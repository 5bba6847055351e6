import Glibc
import Posix
import Wire

/// The runtime attachments of one daemon instance, kept in its state
/// directory so that a restart (crash, SIGKILL, package upgrade) restores
/// them. Devices from the config file are not recorded: the config brings
/// them back by itself.
///
/// The file is JSON, `{"attachments":[{"guest":…,"host":…,"quota":…,"vfio-user":…}],
/// "version":1}`, written with Wire's serializer and read with its parser.
/// It is replaced atomically (write to a temporary file, fsync, rename,
/// fsync the directory), so a crash mid-write leaves the old list.
struct StateStore {
    let directory: String
    var path: String { directory + "/attachments.json" }

    struct Record: Equatable {
        var host: String
        var guest: String
        var quota: Int?
        /// The device's vfio-user socket, if it has one.
        var vfioUser: String? = nil
    }

    /// The file's layout version; written, and required (as an integer) on load.
    static let version = 1
    /// A state file larger than this is not one we wrote.
    static let maximumFileSize = 16 << 20

    /// Creates the directory, and any missing parent, if it does not exist
    /// (systemd's StateDirectory= does it for the unit; a hand-started
    /// daemon needs it too).
    func prepare() throws(StateError) {
        do {
            try FileSystem.makeDirectories(directory, mode: 0o750)
        } catch {
            throw .system(error)
        }
    }

    /// The recorded attachments; none when there is no file yet.
    func load() throws(StateError) -> [Record] {
        let bytes: [UInt8]
        do throws(SystemError) {
            let file: FileDescriptor
            do {
                file = try FileDescriptor.open(path, flags: O_RDONLY)
            } catch where error.errno == ENOENT {
                return []
            }
            bytes = try file.readToEnd(limit: Self.maximumFileSize)
        } catch {
            throw .system(error)
        }
        do {
            return try Self.decode(bytes)
        } catch {
            throw .invalid(path: path, reason: error.message)
        }
    }

    /// Replaces the file with `records`.
    func save(_ records: [Record]) throws(StateError) {
        let bytes = Array((Self.encode(records).serialized + "\n").utf8)
        let temporary = path + ".tmp"
        do throws(SystemError) {
            do {
                let file = try FileDescriptor.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o640)
                try file.writeAll(bytes)
                try file.sync()
                try file.close()
                try FileSystem.rename(temporary, to: path)
            } catch {
                // Leave no half-written file behind; the old list stays.
                _ = try? FileSystem.remove(temporary)
                throw error
            }
            // The rename is durable once the directory's entry is.
            let parent = try FileDescriptor.open(directory, flags: O_RDONLY | O_DIRECTORY)
            try parent.sync()
            try parent.close()
        } catch {
            throw .system(error)
        }
    }

    // MARK: the file's JSON

    static func encode(_ records: [Record]) -> JSONValue {
        .object([
            "version": .int(Int64(version)),
            "attachments": .array(records.map { record in
                var object: [String: JSONValue] = ["host": .string(record.host), "guest": .string(record.guest)]
                if let quota = record.quota { object["quota"] = .int(Int64(quota)) }
                if let socket = record.vfioUser { object["vfio-user"] = .string(socket) }
                return .object(object)
            }),
        ])
    }

    struct DecodeError: Error {
        var message: String
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> [Record] {
        let value: JSONValue
        do {
            value = try JSONValue.parse(utf8: bytes)
        } catch {
            throw DecodeError(message: error.description)
        }
        guard value.objectValue != nil else { throw DecodeError(message: "the top level is \(value.kindDescription), not an object") }
        guard value["version"]?.intValue != nil else { throw DecodeError(message: "\"version\" is missing or not an integer") }
        guard let entries = value["attachments"]?.arrayValue else {
            throw DecodeError(message: "\"attachments\" is missing or not an array")
        }
        var records: [Record] = []
        for (index, entry) in entries.enumerated() {
            guard let host = entry["host"]?.stringValue, let guest = entry["guest"]?.stringValue else {
                throw DecodeError(message: "attachment \(index) needs string \"host\" and \"guest\"")
            }
            var quota: Int?
            if let value = entry["quota"], !value.isNull {
                guard let number = value.intValue else {
                    throw DecodeError(message: "attachment \(index): \"quota\" is \(value.kindDescription), not an integer")
                }
                quota = number
            }
            var socket: String?
            if let value = entry["vfio-user"], !value.isNull {
                guard let path = value.stringValue else {
                    throw DecodeError(message: "attachment \(index): \"vfio-user\" is \(value.kindDescription), not a string")
                }
                socket = path
            }
            records.append(Record(host: host, guest: guest, quota: quota, vfioUser: socket))
        }
        return records
    }
}

/// Why the state directory or its file could not be used.
enum StateError: Error, CustomStringConvertible {
    /// A system call failed: the value names the call, the path and the errno.
    case system(SystemError)
    /// The file is there but is not an attachment list.
    case invalid(path: String, reason: String)

    var description: String {
        switch self {
        case let .system(error):
            "\(error)"
        case let .invalid(path, reason):
            "\(path) is not a valid attachment list (\(reason)); move it aside to start without the recorded attachments"
        }
    }
}
