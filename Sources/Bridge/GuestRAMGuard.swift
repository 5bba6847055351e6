import CGuestRAMGuard

/// The process-wide SIGBUS guard over guest RAM mappings.
///
/// Guest RAM is a file the VMM owns. If the VMM shrinks it (`ftruncate` on an
/// unsealed memfd, a /dev/shm or hugetlbfs file, a regular file), a load from
/// a page past the new end raises SIGBUS. The guard's handler, in C, turns
/// such a fault into zero-filled memory over the whole mapping and marks it
/// lost; the faulting load then reads zero. Reads of zero are not the guest's
/// tables, so `GuestIOMMU` notes the epoch before every piece of work that
/// reads guest RAM and discards that work when the epoch moved
/// (`GuestRAMReadCheck`).
public enum GuestRAMGuard {
    /// Installs the handler (once per process; later calls do nothing).
    /// A failure is fatal: without the handler any VMM could kill us.
    static func install() {
        let rc = vtdb_ram_guard_install()
        precondition(rc == 0, "sigaction(SIGBUS) failed with errno \(-rc): the guest RAM guard cannot be installed")
    }

    /// Faults absorbed so far in this process. Changes whenever any guarded
    /// mapping is lost.
    public static var epoch: UInt64 { vtdb_ram_guard_epoch() }

    /// Guarded mappings alive now (for tests: each is released exactly once).
    public static var mappingsInUse: Int { Int(vtdb_ram_guard_slots_in_use()) }
}

/// Whether guest RAM read since `restart()` is still what the guest wrote.
///
/// One instance is shared by a `GuestIOMMU` and its address spaces: the
/// bridge restarts it when a piece of work begins, and every step that acts
/// on what it read (a context-cache fill, a sync's planned kernel calls)
/// asks `isIntact` first.
final class GuestRAMReadCheck {
    private var since = GuestRAMGuard.epoch

    func restart() { since = GuestRAMGuard.epoch }

    /// False once a guarded mapping was lost since `restart()`: some read
    /// may have returned zeros in place of the guest's data.
    var isIntact: Bool { GuestRAMGuard.epoch == since }
}
