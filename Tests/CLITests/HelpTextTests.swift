import Foundation
import XCTest

/// The help of the three executables is what the man pages are generated
/// from (ArgumentParser's generate-manual) and what completions are made of:
/// every command says what it does, prose has no stray whitespace, and the
/// examples are not rewrapped.
final class HelpTextTests: XCTestCase {
    static let binaries = ["vtdbridgectl", "vtdbridged", "vtdbridge-sim"]

    /// Every (command path, text) of a binary's help: abstracts, discussions
    /// and argument help.
    func texts(of binary: String) throws -> [(command: String, kind: String, text: String)] {
        let r = try CLIProcess.run(binary, ["--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        var out: [(String, String, String)] = []
        func visit(_ command: [String: Any], path: String) {
            guard command["shouldDisplay"] as? Bool != false else { return }
            let name = path.isEmpty ? binary : path + " " + (command["commandName"] as? String ?? "?")
            out.append((name, "abstract", command["abstract"] as? String ?? ""))
            out.append((name, "discussion", command["discussion"] as? String ?? ""))
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["shouldDisplay"] as? Bool != false {
                out.append((name, "help of \(argument["valueName"] as? String ?? "?")", argument["abstract"] as? String ?? ""))
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] { visit(sub, path: name) }
        }
        visit(try XCTUnwrap(root["command"] as? [String: Any]), path: "")
        return out
    }

    func testEveryCommandHasAnAbstract() throws {
        for binary in Self.binaries {
            let abstracts = try texts(of: binary).filter { $0.kind == "abstract" }
            XCTAssertGreaterThan(abstracts.count, 1, binary)
            for a in abstracts where !a.command.hasSuffix(" help") {
                XCTAssertFalse(a.text.isEmpty, "\(a.command) has no abstract")
                XCTAssertTrue(a.text.hasSuffix("."), "\(a.command): \(a.text)")
            }
        }
    }

    /// No run of spaces inside a line (a multi-line string literal whose line
    /// breaks became spaces), no line ending in a space, no backslash that
    /// was meant as a line continuation.
    func testNoBrokenWhitespace() throws {
        for binary in Self.binaries {
            for t in try texts(of: binary) {
                for line in t.text.split(separator: "\n", omittingEmptySubsequences: false) {
                    let body = line.drop { $0 == " " }
                    XCTAssertFalse(body.contains("  "), "\(t.command), \(t.kind): \"\(line)\"")
                    XCTAssertFalse(line.hasSuffix(" "), "\(t.command), \(t.kind): \"\(line)\"")
                }
            }
        }
    }

    /// Indented lines of a discussion (examples) are printed as they are
    /// only if they fit: ArgumentParser rewraps at 80 columns.
    func testExamplesAreNotRewrapped() throws {
        for binary in Self.binaries {
            for t in try texts(of: binary) where t.kind == "discussion" {
                for line in t.text.split(separator: "\n") where line.hasPrefix(" ") {
                    XCTAssertLessThanOrEqual(line.count, 80, "\(t.command): \"\(line)\"")
                }
            }
        }
        let help = try CLIProcess.run("vtdbridgectl", ["walk", "--help"])
        XCTAssertTrue(help.stdout.contains("""
              vtdbridgectl walk --region 0:2G@ram.img \\
                  --region 0x100000000:2G@ram.img+0x80000000 \\
                  --root-table 0x7f000 --device 00:03.0 --json
            """), help.stdout)
    }

    func testVMTestHelpReadsAsProse() throws {
        let r = try CLIProcess.run("vtdbridge-sim", ["vm-test", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = "--leave-for-walk        At the end, leave the daemon's mappings in place and\n"
            + String(repeating: " ", count: 26) + "print what the host must find in the VM kernel's own\n"
        XCTAssertTrue(r.stdout.contains(expected), r.stdout)
    }

    /// What `make install` installs: a completion script for each shell, from
    /// each binary.
    func testCompletionScriptsForEveryShell() throws {
        for binary in Self.binaries {
            for shell in ["bash", "zsh", "fish"] {
                let r = try CLIProcess.run(binary, ["--generate-completion-script", shell])
                XCTAssertEqual(r.status, 0, "\(binary) \(shell): \(r.stderr)")
                XCTAssertTrue(r.stdout.contains(binary == "vtdbridge-sim" ? "vtdbridge-sim" : binary), "\(binary) \(shell)")
                XCTAssertGreaterThan(r.stdout.count, 1000, "\(binary) \(shell)")
            }
        }
        let bash = try CLIProcess.run("vtdbridgectl", ["--generate-completion-script", "bash"])
        for word in ["status", "mappings", "attach", "walk", "--root-table", "--socket"] {
            XCTAssertTrue(bash.stdout.contains(word), "bash completion lacks \(word)")
        }
    }
}
