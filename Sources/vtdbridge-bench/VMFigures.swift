import Foundation

/// Rows from the VM run: the BENCH-ROW lines that `vtdbridge-sim vm-bench`
/// and `vfio-user-bench` printed (scripts/vm/bench.sh). Their goal column is
/// already decided there ("met (…)" or "MISSED (…)", computed from the same
/// run's figures and floor), so it is passed through as printed.
enum VMFigures {
    static func rows(from path: String) throws -> [Row] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var rows: [Row] = []
        for line in text.split(separator: "\n") where line.hasPrefix("BENCH-ROW ") {
            rows.append(try row(line.dropFirst("BENCH-ROW ".count), in: path))
        }
        guard !rows.isEmpty else { throw BenchError("no BENCH-ROW lines in \(path): the VM part did not run") }
        return rows
    }

    /// `figure|n|value|reference|goal`, exactly five fields. A line that is
    /// not is an error, not a row dropped in silence: a '|' inside a field
    /// would otherwise shift the goal into the wrong column or lose a row.
    static func row(_ line: Substring, in path: String) throws -> Row {
        let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, let n = Int(parts[1]) else {
            throw BenchError("\(path): a BENCH-ROW line is not figure|n|value|reference|goal: \(line)")
        }
        return Row(figure: parts[0], value: parts[2], reference: parts[3], goal: parts[4], n: n)
    }
}
