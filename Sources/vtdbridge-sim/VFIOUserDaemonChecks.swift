import Glibc
import VTd
import VTdBridgeClient
import Wire

/// The daemon's side of a vfio-user qtest run, read over its control
/// socket: after each guest change the device holds exactly the guest's
/// mappings (QEMU waited for every DMA_MAP/DMA_UNMAP reply before the
/// guest's invalidation completed, so there is nothing to wait for); with
/// translation off it holds guest RAM, as QEMU maps it; after QEMU is
/// killed it holds nothing and waits for the next client.
struct VFIOUserDaemonChecks: QEMUDaemonChecks {
    let controlSocket: String
    let device: String

    var name: String { "vtdbridged at \(controlSocket), device \(device)" }

    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    private func control() throws -> ControlClient {
        do { return try ControlClient(path: controlSocket) } catch {
            throw Mismatch(description: "the daemon's control socket \(controlSocket): \(error)")
        }
    }

    /// The device's kernel mappings as (iova, size, permission).
    private func mappings() throws -> [GuestMapping] {
        let reply: JSONValue
        do { reply = try control().require("mappings", ["guest": .string(device)]) } catch {
            throw Mismatch(description: "mappings \(device): \(error)")
        }
        return (reply["mappings"]?.arrayValue ?? []).map { m in
            var permission: DMAPermission = []
            if m["read"]?.boolValue == true { permission.insert(.read) }
            if m["write"]?.boolValue == true { permission.insert(.write) }
            return GuestMapping(iova: Self.number(m["iova"]), gpa: 0, size: Self.number(m["size"]), permission: permission)
        }
    }

    private static func size(_ bytes: UInt64) -> String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20)M" : bytes % 1024 == 0 ? "\(bytes >> 10)K" : "\(bytes)"
    }

    private static func number(_ value: JSONValue?) -> UInt64 {
        guard let text = value?.stringValue, text.hasPrefix("0x") else { return .max }
        return UInt64(text.dropFirst(2), radix: 16) ?? .max
    }

    private func vfioUser() throws -> JSONValue {
        let status: JSONValue
        do { status = try control().require("status") } catch { throw Mismatch(description: "status: \(error)") }
        guard let entry = status["devices"]?.arrayValue?.first(where: { $0["guest"]?.stringValue == device }),
              let server = entry["vfio-user"], server.objectValue != nil else {
            throw Mismatch(description: "status lists no vfio-user server for \(device)")
        }
        return server
    }

    func guestChanged(_ view: QEMUGuestView, after what: String) throws -> QEMUCheckOutcome {
        let held = try mappings()
        if !view.translationEnabled {
            // QEMU maps guest RAM while the guest's IOMMU is off, at IOVA =
            // GPA, except the ISA ROM area [0xc0000, 0x100000), which is
            // ROM on q35 and comes without a file (a counted fault).
            let bytes = held.reduce(UInt64(0)) { $0 + $1.size }
            let romArea: UInt64 = 0x40000
            let outsideRAM = held.filter { $0.iova >= view.ramSize || $0.size > view.ramSize - $0.iova }
            let inROM = held.filter { $0.iova < 0x100000 && $0.iova + $0.size > 0xc0000 }
            guard bytes == view.ramSize - romArea, outsideRAM.isEmpty, inROM.isEmpty else {
                throw Mismatch(description: "translation off: the daemon holds \(held), \(hex(bytes)) bytes; expected guest RAM [0, \(hex(view.ramSize))) less the ROM area [0xc0000, 0x100000)")
            }
            return .passed("daemon holds guest RAM (\(held.count) mapping(s), \(hex(bytes)) bytes) while translation is off, \(what)")
        }
        let want = view.mappings.map { GuestMapping(iova: $0.iova, gpa: 0, size: $0.size, permission: $0.permission) }
            .sorted { $0.iova < $1.iova }
        guard held == want else {
            throw Mismatch(description: "\(what): the daemon holds \(held) but the guest's tables map \(want)")
        }
        let list = held.isEmpty ? "nothing" : held.map { "\(hex($0.iova))+\(Self.size($0.size)) \($0.permission)" }.joined(separator: ", ")
        return .passed("the daemon's container holds \(list): exactly the guest's tables")
    }

    func qemuGone(_ view: QEMUGuestView) throws -> QEMUCheckOutcome {
        // The daemon sees the connection end at its next poll round.
        var connected = true
        for _ in 0..<500 {
            connected = try vfioUser()["connected"]?.boolValue ?? true
            if !connected { break }
            usleep(10_000)
        }
        guard !connected else { throw Mismatch(description: "5 s after QEMU was killed the daemon still shows its client connected") }
        let held = try mappings()
        guard held.isEmpty else { throw Mismatch(description: "QEMU is gone but the daemon still holds \(held)") }
        return .passed("QEMU gone: the daemon holds no mapping for \(device) and waits for a client")
    }

    func qemuBack(_ view: QEMUGuestView) throws -> QEMUCheckOutcome {
        let server = try vfioUser()
        guard server["connected"]?.boolValue == true, (server["connections"]?.intValue ?? 0) >= 2 else {
            throw Mismatch(description: "after the new QEMU started, the daemon shows \(server.serialized)")
        }
        let outcome = try guestChanged(view, after: "for the new QEMU")
        guard case let .passed(text) = outcome else { return outcome }
        return .passed("a new QEMU connected (connection \(server["connections"]?.intValue ?? 0)); \(text)")
    }
}
