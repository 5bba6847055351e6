import Glibc

/// The id of the group called `name` (getgrnam_r), or nil if there is none
/// or the lookup failed. Reentrant: safe while other threads look up too.
public func groupID(named name: String) -> gid_t? {
    lookUp { group, buffer, size, result in
        getgrnam_r(name, group, buffer, size, result)
    } extract: { (entry: group) in entry.gr_gid }
}

/// The id of the user called `name` (getpwnam_r), or nil if there is none
/// or the lookup failed.
public func userID(named name: String) -> uid_t? {
    lookUp { user, buffer, size, result in
        getpwnam_r(name, user, buffer, size, result)
    } extract: { (entry: passwd) in entry.pw_uid }
}

/// The *_r lookup protocol: the caller provides the string buffer and grows
/// it while the call answers ERANGE.
private func lookUp<Entry, ID>(
    _ call: (UnsafeMutablePointer<Entry>, UnsafeMutablePointer<CChar>, Int,
             UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>) -> Int32,
    extract: (Entry) -> ID
) -> ID? {
    var size = 1024
    // Beyond this an entry is not plausible; stop rather than grow forever.
    let limit = 1 << 20
    while size <= limit {
        let found: ID?? = withUnsafeTemporaryAllocation(of: Entry.self, capacity: 1) { entry in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: size) { buffer in
                var result: UnsafeMutablePointer<Entry>? = nil
                let failure = call(entry.baseAddress!, buffer.baseAddress!, size, &result)
                if failure == ERANGE { return .none }
                guard failure == 0, let result else { return .some(nil) }
                return .some(extract(result.pointee))
            }
        }
        if let found { return found }
        size *= 2
    }
    return nil
}
