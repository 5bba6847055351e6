/// What a check that looks from outside the guest found. A failed check
/// throws; a check that cannot apply in this mode says so as `skipped`, and
/// the run reports it as skipped, never as passed.
enum QEMUCheckOutcome {
    case passed(String)
    case skipped(String)
}
