import Glibc
import VTd
import VTdBridgeClient
import VTdGuest
import Wire

/// `scenario edu-dma`: real DMA through the mappings of a daemon that is
/// already running, on the vfio backend, with edu devices (PCI 1234:11e8)
/// attached. Not part of "all": the dry-run backend has no device to DMA
/// with. Used where the daemon is not this process's child, e.g. under
/// systemd (scripts/vm/systemd-service.sh), by a VMM that is neither root
/// nor the daemon's user.
///
/// For each device: its device fd comes from attaching it again with
/// return-fd, named as `status` names its host (AttachArguments); the guest
/// maps a source page read-only and a target page read-write below the
/// edu's 28-bit DMA limit; the edu copies the source into its buffer and
/// out to the target, and the target must hold exactly the source's bytes.
/// Then the guest unmaps the target, and a second DMA must leave it as it
/// was: what the guest took away the device cannot reach.
extension Scenarios {
    func eduDMA() throws {
        try ensureAttached()
        let status = try control.require("status")
        for (d, sid) in devices.enumerated() {
            guard let entry = status["devices"]?.arrayValue?.first(where: { $0["guest"]?.stringValue == sid.description }),
                  let host = entry["host"]?.stringValue else {
                throw SimError("\(sid) is not among the daemon's devices: \(status["devices"]?.serialized ?? "none")")
            }
            guard entry["vfio-user"] == nil || entry["vfio-user"] == .null else {
                throw SimError("\(sid) is served over vfio-user; its mappings come from the vfio-user client, not from this guest")
            }
            guard let arguments = AttachArguments.naming(host: host, guest: sid.description, returnFD: true) else {
                throw SimError("\(sid): status names its host \"\(host)\", which is neither group:N nor a PCI address")
            }
            let (result, fd) = try control.call("attach", arguments)
            let reply = try result.get()
            guard let fd else { throw SimError("attach \(host) as \(sid) returned no device fd: \(reply.serialized)") }
            let edu = try EduDevice(adopting: fd, address: host)
            transcript.daemon("\(sid) (\(host)): device fd received (already attached: \(reply["already-attached"]?.boolValue ?? false))")

            // Below the edu's DMA mask, clear of what the other scenarios map.
            let sourceIOVA = 0x0800_0000 + UInt64(d) * 0x10_0000, targetIOVA = sourceIOVA + 0x1000
            let source = dataPage(400 + UInt64(d) * 2), target = source + 0x1000
            let bytes = guest.fill(gpa: source, count: 2048, seed: UInt8(truncatingIfNeeded: 0x40 + d))
            guest.memory.write(gpa: target, bytes: [UInt8](repeating: 0, count: 4096))
            let batch = try guest.map(domain: domain(sid), iova: sourceIOVA, gpa: source, permission: .read)
                + guest.map(domain: domain(sid), iova: targetIOVA, gpa: target, permission: .readWrite)
            transcript.guest("\(sid): iova 0x\(String(sourceIOVA, radix: 16)) → gpa 0x\(String(source, radix: 16)) (read), iova 0x\(String(targetIOVA, radix: 16)) → gpa 0x\(String(target, radix: 16)) (read/write)")
            try deliver(batch, "2 page-selective invalidations")
            try edu.read(iova: sourceIOVA, count: 2048)
            try edu.write(iova: targetIOVA, count: 2048)
            let landed = guest.memory.read(gpa: target, count: 2048) ?? []
            guard landed == bytes else {
                throw SimError("\(sid): the edu DMA landed \(hexPrefix(landed)) at the target page, expected \(hexPrefix(bytes))")
            }
            transcript.check("\(sid): edu DMA RAM → device → RAM moved exactly the 2048 bytes the guest wrote")

            try deliver(try guest.unmap(domain: domain(sid), iova: targetIOVA), "the target page's PTE cleared")
            _ = guest.fill(gpa: source, count: 2048, seed: UInt8(truncatingIfNeeded: 0x80 + d))
            try edu.read(iova: sourceIOVA, count: 2048)
            try edu.write(iova: targetIOVA, count: 2048)
            let after = guest.memory.read(gpa: target, count: 2048) ?? []
            guard after == bytes else {
                throw SimError("\(sid): DMA to the unmapped target IOVA changed guest memory (now \(hexPrefix(after)))")
            }
            transcript.check("\(sid): after the unmap, DMA to the target IOVA did not reach guest memory")
            try deliver(try guest.unmap(domain: domain(sid), iova: sourceIOVA), "the source page's PTE cleared")
        }
        try verifyAll()
    }

    private func hexPrefix(_ bytes: [UInt8]) -> String {
        bytes.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() + (bytes.count > 8 ? "…" : "")
    }
}
