import ArgumentParser
import Bridge
import Foundation
import VTd
import VTdGuest
@testable import vtdbridge_sim
@testable import vtdbridgectl
@testable import vtdbridged
import XCTest

/// Every command line of README.md's code blocks that runs vtdbridgectl,
/// vtdbridged or vtdbridge-sim is parsed by that command's own parser (no
/// unknown option or argument), and those that can run on this host run:
/// vtdbridgectl against a real vtdbridged (dry-run), walk over RAM images
/// built to match, a block that starts its own daemon (`vtdbridged … &`)
/// as written, in a directory of its own. A `$ ` transcript's output must be
/// what the command prints. So the README cannot drift from the tools.
final class READMEExamplesTests: XCTestCase {
    static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md")

    func examples() throws -> [READMEExample] {
        try READMEExample.extract(from: String(contentsOf: Self.readme, encoding: .utf8))
    }

    /// The parse, with the real parsers; nil when it parses, else the message.
    func parseError(_ example: READMEExample) -> String? {
        func check<Command: ParsableCommand>(_ type: Command.Type, _ arguments: [String]) -> String? {
            do {
                _ = try type.parseAsRoot(arguments)
                return nil
            } catch {
                // --help and --version end the parse successfully.
                return type.exitCode(for: error) == .success ? nil : type.message(for: error)
            }
        }
        switch example.program {
        case "vtdbridgectl":
            switch VTdBridgeCtl.parserArguments(example.arguments) {
            case let .arguments(arguments): return check(VTdBridgeCtl.self, arguments)
            case let .misplaced(message): return message
            }
        case "vtdbridged": return check(VTdBridged.self, example.arguments)
        default: return check(VTdBridgeSim.self, example.arguments)
        }
    }

    func testTheExtractorFindsEveryForm() throws {
        let markdown = """
        text `vtdbridgectl inline` is not a block
        ```sh
        make install   # not ours
        vtdbridgectl --name vm0 status   # a comment
        vtdbridged --device 'a=b,c=d' \\
                   --name x &
        ```

        ```
        $ vtdbridgectl walk --memory m \\
            --device 00:03.0
        line one
        line two
        $ vtdbridge-sim --version
        ```
        """
        let e = try READMEExample.extract(from: markdown)
        XCTAssertEqual(e.map(\.words), [["vtdbridgectl", "--name", "vm0", "status"], ["vtdbridged", "--device", "a=b,c=d", "--name", "x"],
                                       ["vtdbridgectl", "walk", "--memory", "m", "--device", "00:03.0"], ["vtdbridge-sim", "--version"]])
        XCTAssertEqual(e.map(\.background), [false, true, false, false])
        XCTAssertEqual(e.map(\.output), [nil, nil, "line one\nline two\n", ""])
        XCTAssertEqual(e.map(\.line), [4, 5, 10, 14])
        XCTAssertEqual(e.map(\.block), [0, 0, 1, 1])
    }

    func testTheParserCatchesAWrongExample() throws {
        let wrong = READMEExample(words: ["vtdbridgectl", "status", "--nmae", "vm0"], background: false, output: nil, line: 1, block: 0)
        XCTAssertNotNil(parseError(wrong))
        let right = READMEExample(words: ["vtdbridgectl", "--name", "vm0", "status"], background: false, output: nil, line: 1, block: 0)
        XCTAssertNil(parseError(right))
        let daemon = READMEExample(words: ["vtdbridged", "--devices", "x"], background: false, output: nil, line: 1, block: 0)
        XCTAssertNotNil(parseError(daemon))
    }

    func testEveryExampleParses() throws {
        let all = try examples()
        XCTAssertGreaterThanOrEqual(all.count, 12, "README.md's examples were not found")
        XCTAssertEqual(Set(all.map(\.program)), READMEExample.programs)
        for example in all {
            if let message = parseError(example) {
                XCTFail("README.md:\(example.line): \(example.text)\n\(message)")
            }
        }
    }

    func testEveryExampleThatCanRunHereRuns() throws {
        let scratch = NSTemporaryDirectory() + "readme-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let fixtures = try WalkFixtures(directory: scratch)
        var shared: CLIDaemon?
        var blockDaemons: [Int: CLIDaemon] = [:]
        var ran = 0
        for example in try examples() {
            // The README's scratch directory, one of ours per block.
            let blockDirectory = scratch + "/block\(example.block)"
            var arguments = example.arguments.map { $0.replacingOccurrences(of: "/tmp/demo", with: blockDirectory) }
            let place = "README.md:\(example.line): \(example.text)"
            switch example.program {
            case "vtdbridged":
                // Only a daemon started in the background is the README's
                // own dry-run walk-through; the others need VFIO or systemd.
                guard example.background else { continue }
                let control = value(of: "--control-socket", in: arguments)
                blockDaemons[example.block] = try CLIDaemon(arguments: arguments, directory: blockDirectory, controlSocket: control)
                ran += 1
                continue
            case "vtdbridge-sim":
                // The simulator needs the daemon its block started.
                guard blockDaemons[example.block] != nil else { continue }
            default:
                guard case let .arguments(normalized) = VTdBridgeCtl.parserArguments(arguments) else { continue }
                if normalized.first == "walk" {
                    arguments = fixtures.substitute(arguments)
                } else if normalized.first.map(VTdBridgeCtl.commandNames.contains) == true, blockDaemons[example.block] == nil {
                    // A command for an installed instance: the same command
                    // against the test's daemon.
                    if shared == nil { shared = try CLIDaemon(name: "vm0") }
                    if let i = arguments.firstIndex(of: "--socket"), i + 1 < arguments.count { arguments.removeSubrange(i...(i + 1)) }
                    arguments += ["--socket", shared!.controlSocket]
                }
            }
            let r = try CLIProcess.run(example.program, arguments)
            ran += 1
            XCTAssertEqual(r.status, 0, "\(place)\nstdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
            if let output = example.output {
                XCTAssertEqual(r.stdout, output, place)
            }
        }
        XCTAssertGreaterThanOrEqual(ran, 10, "too few README examples ran")
        XCTAssertFalse(blockDaemons.isEmpty, "the README's dry-run walk-through did not run")
        for (_, daemon) in blockDaemons { XCTAssertEqual(daemon.terminate(), 0, daemon.log) }
        if let shared { XCTAssertEqual(shared.terminate(), 0, shared.log) }
    }

    func value(of option: String, in arguments: [String]) -> String? {
        guard let i = arguments.firstIndex(of: option), i + 1 < arguments.count else { return nil }
        return arguments[i + 1]
    }
}

/// The guest RAM files README.md's walk examples name, built so that the
/// examples find what they show: device 00:03.0 in domain 5 under the root
/// table at 0x7ffc000, with a 4 KiB page, a read-only 2 MiB leaf, and a leaf
/// at 4 GiB, which is outside the 256 MiB image and inside the 4 GiB one.
struct WalkFixtures {
    /// README path → our file, longest first so that no path replaces part
    /// of a longer one.
    var files: [(readme: String, path: String)] = []

    init(directory: String) throws {
        files.append(("/dev/shm/vm0-ram", try Self.image(directory + "/vm0-ram", size: 256 << 20, regions: nil)))
        files.append(("/dev/shm/vm0", try Self.image(directory + "/vm0", size: 4 << 30, regions: [(0, 2 << 30, 0), (1 << 32, 2 << 30, 2 << 30)])))
    }

    func substitute(_ arguments: [String]) -> [String] {
        arguments.map { argument in
            for file in files where argument.contains(file.readme) {
                return argument.replacingOccurrences(of: file.readme, with: file.path)
            }
            return argument
        }
    }

    /// A sparse file of `size` bytes; `regions` (GPA, size, file offset) as
    /// the example lays it out in guest-physical space (default: all at 0).
    static func image(_ path: String, size: UInt64, regions: [(UInt64, UInt64, UInt64)]?) throws -> String {
        guard FileManager.default.createFile(atPath: path, contents: nil), truncate(path, off_t(size)) == 0 else {
            throw CLITestError("cannot create \(path)")
        }
        let layout = (regions ?? [(0, size, 0)]).map { GuestRAMRegionSpec(gpa: $0.0, size: $0.1, backing: .path(path, offset: $0.2)) }
        let ram = try GuestRAM(layout)
        var writer = try GuestTableWriter(memory: ram, caps: .make(), tableArea: 0x7ffc000..<0x8400000)
        _ = try writer.attach(SourceID("00:03.0")!, domain: 5)
        _ = try writer.map(domain: 5, iova: 0x1000, gpa: 0x8000)
        _ = try writer.map(domain: 5, iova: 0x20_0000, gpa: 0x40_0000, sizeShift: 21, permission: .read)
        _ = try writer.map(domain: 5, iova: 0x3000, gpa: 0x1_0000_0000)
        return path
    }
}
