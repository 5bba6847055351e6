/// `--name`, `--socket` and `--json` before the command's name.
///
/// Every control command declares them (ControlOptions), and ArgumentParser
/// accepts a subcommand's options only after the subcommand's name. People
/// type `vtdbridgectl --name vm0 status` (as `systemctl`, `ip` and `git -C`
/// taught them), so the options that precede the command are moved after
/// it before parsing: `status --name vm0`. Only these three are moved, and
/// only when a command's name follows them; anything else is left for the
/// parser to report with the usage of the command it belongs to.
enum GlobalOptions {
    static let withValue: Set = ["--name", "--socket"]
    static let flags: Set = ["--json"]

    enum Outcome: Equatable {
        /// The arguments to parse.
        case arguments([String])
        /// Global options with no command after them: the message to print.
        case misplaced(String)
    }

    /// `commands` are the names of the subcommands.
    static func normalize(_ arguments: [String], commands: Set<String>) -> Outcome {
        var moved: [String] = []
        var i = 0
        scan: while i < arguments.count {
            let argument = arguments[i]
            if flags.contains(argument) {
                moved.append(argument)
                i += 1
            } else if withValue.contains(argument), i + 1 < arguments.count {
                moved += [argument, arguments[i + 1]]
                i += 2
            } else if withValue.contains(where: { argument.hasPrefix($0 + "=") }) {
                moved.append(argument)
                i += 1
            } else {
                break scan
            }
        }
        guard !moved.isEmpty else { return .arguments(arguments) }
        if i < arguments.count, commands.contains(arguments[i]) {
            return .arguments([arguments[i]] + moved + arguments[(i + 1)...])
        }
        // `vtdbridgectl --name vm0 --help` means the root's help.
        if i < arguments.count, ["-h", "--help", "help"].contains(arguments[i]) {
            return .arguments(Array(arguments[i...]))
        }
        let found = i < arguments.count ? "'\(arguments[i])'" : "nothing"
        return .misplaced("\(moved.joined(separator: " ")) must be followed by a command (status, mappings, attach, …), found \(found); e.g. vtdbridgectl --name vm0 status")
    }
}
