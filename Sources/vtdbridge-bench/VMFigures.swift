import Foundation

/// Rows from the VM run: BENCH lines that `vtdbridge-sim vm-bench` printed.
enum VMFigures {
    static func rows(from path: String) throws -> [Row] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var rows: [Row] = []
        for line in text.split(separator: "\n") where line.hasPrefix("BENCH-ROW ") {
            // BENCH-ROW figure|n|value|reference|goal
            let parts = line.dropFirst("BENCH-ROW ".count).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 5 else { continue }
            rows.append(Row(figure: parts[0], value: parts[2], reference: parts[3], goal: parts[4], n: Int(parts[1]) ?? 0))
        }
        guard !rows.isEmpty else { throw BenchError("no BENCH-ROW lines in \(path): the VM part did not run") }
        return rows
    }
}
