/// What systemd's STATUS= line says about the daemon (`systemctl status`
/// shows it as "Status:"): devices, the VMM's session, mappings held.
///
/// A value, so that the loop can tell cheaply whether anything changed
/// since the last line was sent (StatusReporter) before it builds text.
struct DaemonStatus: Equatable, CustomStringConvertible {
    var devices: Int
    /// The VMM session's phase (EventSession.Phase), nil without a VMM.
    var vmmPhase: String?
    var mappings: Int

    /// "1 device(s), VMM ready, 17 mapping(s)"
    var description: String {
        "\(devices) device(s), \(vmmPhase.map { "VMM \($0)" } ?? "no VMM"), \(mappings) mapping(s)"
    }
}
