// A SIGBUS guard for guest RAM mapped from a file the VMM owns.
//
// The VMM can shrink that file (ftruncate) at any time, and a load from a
// page past the new end raises SIGBUS, which would kill the daemon. The
// guard's handler recognises a fault inside a registered mapping, replaces
// the whole mapping with zero-filled anonymous memory so that the load can
// complete, and marks the mapping lost. The daemon checks the fault epoch
// after each piece of work that read guest RAM and discards what such reads
// produced (docs/ARCHITECTURE.md, "Guest RAM that shrinks").
#ifndef CGUESTRAMGUARD_H
#define CGUESTRAMGUARD_H

#include <stddef.h>
#include <stdint.h>

/// Installs the SIGBUS handler once per process (later calls do nothing).
/// Returns 0 or -errno from sigaction.
int vtdb_ram_guard_install(void);

/// Registers [base, base + length) as guarded. `prot` is the protection the
/// replacement memory gets (the mapping's own). Returns a slot number, or
/// -ENOSPC when every slot is taken.
int vtdb_ram_guard_register(void *base, size_t length, int prot);

/// Forgets a slot; call before unmapping the range.
void vtdb_ram_guard_unregister(int slot);

/// 1 when a SIGBUS hit the slot's range since it was registered, else 0.
int vtdb_ram_guard_lost(int slot);

/// Offset into the range of the first SIGBUS, or UINT64_MAX if none.
uint64_t vtdb_ram_guard_fault_offset(int slot);

/// How many guarded faults the handler has absorbed in this process.
uint64_t vtdb_ram_guard_epoch(void);

/// Test hook: the number of slots in use.
int vtdb_ram_guard_slots_in_use(void);

#endif
