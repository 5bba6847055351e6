import Bridge
import Foundation
import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

extension KillSoak {
    // MARK: checks

    /// The three checks after a restart; returns a one-line account.
    func check() throws -> String {
        // 1. The daemon's mappings equal the guest's tables, exactly.
        var counts: [Int] = []
        for (sid, _) in domains {
            let held = try runner.mappings(sid)
            var heldMap: [UInt64: String] = [:]
            for m in held {
                guard let iova = hexValue(m["iova"]) else { throw SimError("\(sid): unreadable mapping \(m.serialized)") }
                heldMap[iova] = describe(gpa: hexValue(m["gpa"]), size: hexValue(m["size"]), permission: permissionValue(m) ?? [])
            }
            var wantMap: [UInt64: String] = [:]
            for (iova, leaf) in guest.expected(sid) {
                wantMap[iova] = describe(gpa: leaf.gpa, size: leaf.size, permission: leaf.permission)
            }
            if heldMap != wantMap || held.count != wantMap.count {
                let missing = wantMap.keys.filter { heldMap[$0] == nil }.sorted().map { "\(hex($0))→\(wantMap[$0]!)" }
                let extra = heldMap.keys.filter { wantMap[$0] == nil }.sorted().map { "\(hex($0))→\(heldMap[$0]!)" }
                let differ = wantMap.keys.filter { heldMap[$0] != nil && heldMap[$0] != wantMap[$0] }.sorted()
                    .map { "\(hex($0)): daemon \(heldMap[$0]!), guest \(wantMap[$0]!)" }
                throw SimError("""
                    \(sid): the daemon holds \(held.count) mapping(s), the guest's tables \(wantMap.count): \
                    missing (the guest kept them) \(missing.prefix(12)), \
                    extra (the guest unmapped them) \(extra.prefix(12)), \
                    different \(differ.prefix(12))
                    """)
            }
            counts.append(held.count)
        }
        // 2. A replay over the tables just synced makes no kernel call.
        let replay = try runner.control.require("replay", ["all": true])
        guard replay["maps"]?.intValue == 0, replay["unmaps"]?.intValue == 0 else {
            throw SimError("a replay right after the restart made kernel calls: \(replay.serialized)")
        }
        // 3. Real DMA.
        let dma = try dmaCheck()
        return "mappings \(counts.map(String.init).joined(separator: "+")) = guest's, replay 0 calls; \(dma)"
    }

    func describe(gpa: UInt64?, size: UInt64?, permission: DMAPermission) -> String {
        "0x\(String(gpa ?? 0, radix: 16))/0x\(String(size ?? 0, radix: 16))/\(permission)"
    }
}
