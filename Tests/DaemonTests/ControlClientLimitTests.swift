import UnixIO
import VTdBridgeClient
import Wire
import XCTest

/// PROTOCOL.md §2.1: `control.max-clients` counts the clients connected
/// now, not those that have closed and whose end of stream the daemon has
/// not read yet.
final class ControlClientLimitTests: XCTestCase {
    /// 16 clients connect and close; the 17th must be served, every time.
    func testControlClientsThatLeftDoNotCountAgainstMaxClients() throws {
        let daemon = try DaemonHarness()
        defer { XCTAssertEqual(daemon.terminate(), 0, daemon.log) }
        for round in 0 ..< 10 {
            var gone: [UnixConnection] = []
            for _ in 0 ..< 16 { gone.append(try UnixConnection.connect(path: daemon.controlSocket)) }
            for c in gone { c.close() }
            let status = try daemon.control().call("status").result
            guard case .success = status else {
                return XCTFail("round \(round): the 17th client was refused: \(status)")
            }
        }
        // The limit still holds for clients that stay.
        var live: [ControlClient] = []
        for _ in 0 ..< 16 { live.append(try daemon.control()) }
        for c in live { _ = try c.require("status") }
        let refused = try daemon.control().call("status").result
        guard case let .failure(error) = refused else { return XCTFail("a 17th live client was served") }
        XCTAssertTrue(error.message.contains("control.max-clients"), error.message)
        live.removeAll()
    }
}
