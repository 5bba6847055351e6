import Foundation

/// The command lines of README.md's code blocks that run one of our three
/// executables, as the shell would split them.
struct READMEExample {
    /// Program and arguments.
    var words: [String]
    /// The command ended in `&` (started in the background).
    var background: Bool
    /// A `$ ` transcript's output lines after the command, if any.
    var output: String?
    /// 1-based line in README.md, for messages.
    var line: Int
    /// Which code block it is in (0-based), to run a block's commands together.
    var block: Int

    static let programs: Set = ["vtdbridgectl", "vtdbridged", "vtdbridge-sim"]

    var program: String { words[0] }
    var arguments: [String] { Array(words.dropFirst()) }
    var text: String { words.joined(separator: " ") }

    static func extract(from markdown: String) throws -> [READMEExample] {
        var examples: [READMEExample] = []
        var inBlock = false
        var block = -1
        // A logical line being joined (continuation lines), where it began,
        // and whether it began with a `$ ` prompt.
        var pending: (text: String, line: Int, prompt: Bool)?
        // After a prompted command, the lines up to the next prompt are its
        // output (`inTranscript`); the command, when it is one of ours.
        var inTranscript = false
        var transcript: READMEExample?
        func finishTranscript() {
            if let t = transcript { examples.append(t) }
            transcript = nil
            inTranscript = false
        }
        for (offset, raw) in markdown.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            if raw.trimmingCharacters(in: .whitespaces).hasPrefix("```") {
                finishTranscript()
                pending = nil
                inBlock.toggle()
                if inBlock { block += 1 }
                continue
            }
            guard inBlock else { continue }
            var text = String(raw)
            var prompt = pending?.prompt ?? false
            if pending == nil {
                if text.hasPrefix("$ ") {
                    finishTranscript()
                    text.removeFirst(2)
                    prompt = true
                } else if inTranscript {
                    if var t = transcript {
                        t.output = (t.output ?? "") + text + "\n"
                        transcript = t
                    }
                    continue
                }
            }
            if text.hasSuffix("\\") {
                pending = ((pending?.text ?? "") + text.dropLast() + " ", pending?.line ?? number, prompt)
                continue
            }
            let logical = (pending?.text ?? "") + text
            let start = pending?.line ?? number
            pending = nil
            inTranscript = prompt
            var words = try shellWords(logical)
            guard let first = words.first, programs.contains(first) else { continue }
            var background = false
            if words.last == "&" { words.removeLast(); background = true }
            let example = READMEExample(words: words, background: background, output: prompt ? "" : nil, line: start, block: block)
            if prompt { transcript = example } else { examples.append(example) }
        }
        finishTranscript()
        return examples
    }

    /// Splits a line as sh does for what the README uses: blanks, '…', "…",
    /// backslash escapes, a `#` comment, and `&` as a word of its own.
    static func shellWords(_ line: String) throws -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for c in line {
            if escaped { word.append(c); escaped = false; inWord = true; continue }
            if let q = quote {
                if c == q { quote = nil } else if c == "\\" && q == "\"" { escaped = true } else { word.append(c) }
                continue
            }
            switch c {
            case "\\": escaped = true
            case "'", "\"": quote = c; inWord = true
            case " ", "\t":
                if inWord { words.append(word); word = ""; inWord = false }
            case "#" where !inWord:
                if inWord { words.append(word) }
                return words
            case "&" where !inWord:
                words.append("&")
            default:
                word.append(c); inWord = true
            }
        }
        guard quote == nil else { throw CLITestError("unterminated quote in: \(line)") }
        if inWord { words.append(word) }
        return words
    }
}
