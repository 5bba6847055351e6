import Foundation
import Logging

/// The runtime attachments of one daemon instance, kept in its state
/// directory so that a restart (crash, SIGKILL, package upgrade) restores
/// them. Devices from the config file are not recorded: the config brings
/// them back by itself.
///
/// The file is replaced atomically (write to a temporary file, fsync,
/// rename, fsync the directory), so a crash mid-write leaves the old list.
struct StateStore {
    let directory: String
    var path: String { directory + "/attachments.json" }

    struct Record: Codable, Equatable {
        var host: String
        var guest: String
        var quota: Int?
    }

    private struct File: Codable {
        var version = 1
        var attachments: [Record]
    }

    /// Creates the directory if it does not exist (systemd's StateDirectory=
    /// does it for the unit; a hand-started daemon needs it too).
    func prepare() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o750])
    }

    func load() throws -> [Record] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            return try JSONDecoder().decode(File.self, from: data).attachments
        } catch {
            throw StateError(message: "\(path) is not a valid attachment list (\(error)); move it aside to start without the recorded attachments")
        }
    }

    func save(_ records: [Record]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(File(attachments: records))
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw StateError(message: "open(\(temporary)): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else {
            unlink(temporary)
            throw StateError(message: "writing \(temporary) failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            throw StateError(message: "rename(\(temporary), \(path)): \(String(cString: strerror(errno)))")
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

struct StateError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
