/// Guest RAM names its files, so that the mapping journal records a mapping
/// by file and offset, and a restarted daemon finds the same bytes at its
/// own host address once the VMM sends the same files again.
extension GuestRAM: HostMemoryFiles {
    public func fileLocation(ofHostAddress host: UInt64, size: UInt64) -> FileLocation? {
        for (i, r) in regions.enumerated()
        where host >= r.hostAddress && host - r.hostAddress < r.size && size <= r.size - (host - r.hostAddress) {
            let identity = mappings[i].identity
            return FileLocation(device: identity.device, inode: identity.inode, offset: identity.offset + (host - r.hostAddress))
        }
        return nil
    }

    public func hostAddress(of location: FileLocation, size: UInt64) -> UInt64? {
        guard location.isKnown else { return nil }
        for (i, r) in regions.enumerated() {
            let identity = mappings[i].identity
            guard identity.device == location.device, identity.inode == location.inode,
                  location.offset >= identity.offset else { continue }
            let delta = location.offset - identity.offset
            if delta < r.size, size <= r.size - delta { return r.hostAddress + delta }
        }
        return nil
    }
}
