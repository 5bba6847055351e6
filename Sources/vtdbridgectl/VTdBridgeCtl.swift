import ArgumentParser
import VTdBuildInfo

@main
struct VTdBridgeCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtdbridgectl",
        abstract: "Inspect and control vtd-bridge, the VT-d to VFIO bridge daemon.",
        discussion: """
        Every command but walk talks to a running vtdbridged over its control socket \
        (docs/PROTOCOL.md §2): /run/vtd-bridge/NAME/control.sock for the instance \
        vtdbridged@NAME (--name, default "default"), or the path given with --socket. \
        --name, --socket and --json go before or after the command's name: \
        "vtdbridgectl --name vm0 status" and "vtdbridgectl status --name vm0" are the same.

        Sizes are printed exactly, in binary units (4 KiB, 2 MiB, 1.5 GiB); addresses \
        in hex. --json prints the daemon's reply unchanged.

        Exit status: 0 done; 1 the daemon refused the request (its code and message on \
        stderr), or walk could not read guest memory; 2 the daemon could not be reached \
        or its reply not read; 64 a command line it does not understand (with the \
        command's usage).
        """,
        version: BuildInfo.versionLine(program: "vtdbridgectl"),
        subcommands: [Status.self, Mappings.self, Attach.self, Detach.self, Replay.self, Metrics.self, LogLevel.self, Shutdown.self, Walk.self]
    )

    /// The subcommands' names, for GlobalOptions.
    static var commandNames: Set<String> { Set(configuration.subcommands.map { $0._commandName }) }

    /// `arguments` (without the program name) as the parser is to see them:
    /// global options moved after the command (GlobalOptions).
    static func parserArguments(_ arguments: [String]) -> GlobalOptions.Outcome {
        GlobalOptions.normalize(arguments, commands: commandNames)
    }

    static func main() {
        switch parserArguments(Array(CommandLine.arguments.dropFirst())) {
        case let .arguments(arguments):
            main(arguments)
        case let .misplaced(message):
            exit(withError: ValidationError(message))
        }
    }
}
