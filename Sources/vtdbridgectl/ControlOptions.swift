import ArgumentParser
import Posix
import VTdBridgeClient
import Wire

/// Where the daemon is, and how to print: the options every control command
/// takes, after its name or before it (GlobalOptions).
struct ControlOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's control socket (default /run/vtd-bridge/NAME/control.sock).", valueName: "PATH"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The daemon instance: vtdbridged@NAME, with its sockets under /run/vtd-bridge/NAME/ (default: default).", valueName: "NAME"))
    var name: String?

    @Flag(name: .long, help: "Print the daemon's JSON reply, for scripts.")
    var json = false

    var path: String { socket ?? "/run/vtd-bridge/\(name ?? "default")/control.sock" }

    /// The instance a hint should name: the one given or implied, unless only
    /// a socket path was given (then the hint names the path).
    var instance: String? { socket != nil && name == nil ? nil : name ?? "default" }

    /// Runs one command and prints its result. Exit status (README, "The
    /// operator's commands"): 1 when the daemon refused (its code and message
    /// on stderr), 2 when it could not be reached or its reply not read.
    func run(_ command: String, _ arguments: [String: JSONValue] = [:], render: (JSONValue) -> String) throws {
        let result: Result<JSONValue, ControlError>
        do {
            let client = try ControlClient(path: path, instance: instance)
            // A descriptor in the reply (attach's device fd) is of no use
            // here; it closes as the tuple goes.
            let (r, _) = try client.call(command, arguments)
            result = r
        } catch {
            FileHandleStderr.write("vtdbridgectl: \(error)\n")
            throw ExitCode(2)
        }
        switch result {
        case let .success(value):
            print(json ? value.serialized : render(value), terminator: json ? "\n" : "")
        case let .failure(error):
            if json {
                print(ControlCodec.errorLine(id: nil, error: error), terminator: "")
            }
            FileHandleStderr.write("vtdbridgectl \(command): \(error.code): \(error.message)\n")
            throw ExitCode(1)
        }
    }
}
