#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// User and group names to numeric ids, through NSS (getpwnam_r /
/// getgrnam_r): /etc/passwd, /etc/group, or whatever nsswitch.conf names.
enum ConfigIdentity {
    enum Lookup<ID> {
        case found(ID)
        case notFound
        case failed(Int32)
    }

    /// The largest id accepted: (uid_t)-1 and (gid_t)-1 mean "no change" to
    /// chown and can never be a real id.
    static let maximumID = UInt64(UInt32.max - 1)

    static func lookupUser(_ name: String) -> Lookup<uid_t> {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var size = max(1024, Int(sysconf(Int32(_SC_GETPW_R_SIZE_MAX))))
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            let rc = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
            if rc == ERANGE && size < 1 << 20 {
                size *= 2
                continue
            }
            if rc != 0 { return .failed(rc) }
            guard let found = result else { return .notFound }
            return .found(found.pointee.pw_uid)
        }
    }

    static func lookupGroup(_ name: String) -> Lookup<gid_t> {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var size = max(1024, Int(sysconf(Int32(_SC_GETGR_R_SIZE_MAX))))
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            let rc = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
            if rc == ERANGE && size < 1 << 20 {
                size *= 2
                continue
            }
            if rc != 0 { return .failed(rc) }
            guard let found = result else { return .notFound }
            return .found(found.pointee.gr_gid)
        }
    }
}
