import Wire

/// The arguments of an `attach` that names a host device the way `status`
/// and `attach` replies spell it: `"group:12"` (attached by VFIO group
/// number) or a PCI address `"0000:01:00.0"`.
///
/// A client that finds a device already attached (from the daemon's config,
/// or by another client) gets its device fd by attaching it again with
/// `return-fd`: the daemon answers `already-attached` with a new descriptor,
/// but only when the host is named as it was attached, by group or by
/// address (docs/PROTOCOL.md, `attach`). So the name in `status` is turned
/// back into the argument it came from, not resolved to the other form.
public enum AttachArguments {
    /// `host` as `status` reports it; nil when it is neither form (a
    /// `group:` without a decimal group number, or an empty string).
    public static func naming(host: String, guest: String, returnFD: Bool = false) -> [String: JSONValue]? {
        var arguments: [String: JSONValue] = ["guest": .string(guest)]
        if host.hasPrefix("group:") {
            let digits = host.dropFirst("group:".count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
                  let group = Int64(digits) else { return nil }
            arguments["group"] = .int(group)
        } else {
            guard !host.isEmpty else { return nil }
            arguments["host"] = .string(host)
        }
        if returnFD { arguments["return-fd"] = true }
        return arguments
    }
}
