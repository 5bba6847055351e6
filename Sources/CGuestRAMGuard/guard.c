// The SIGBUS guard (see the header for why it exists).
//
// Async-signal safety: the handler touches only lock-free atomics and calls
// mmap(2) and sigaction(2), which glibc implements as plain system calls.

#define _GNU_SOURCE
#include "CGuestRAMGuard.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

// A daemon serves one VM, whose memory table has at most 64 regions, and a
// reconnect may briefly hold two tables; tests make many short-lived ones.
#define SLOTS 1024

struct slot {
    _Atomic uintptr_t base;    // 0 when free
    _Atomic size_t length;
    _Atomic int prot;
    _Atomic int lost;
    _Atomic uint64_t fault_offset;
};

static struct slot slots[SLOTS];
static _Atomic uint64_t epoch;
static _Atomic int installed;
static struct sigaction previous;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t base = atomic_load(&slots[i].base);
        if (base == 0) continue;
        size_t length = atomic_load(&slots[i].length);
        if (address < base || address - base >= length) continue;
        // The whole range, not only the faulting page: a hugetlbfs mapping
        // can only be replaced in whole huge pages, and a file that shrank
        // once is no longer trusted anywhere. MAP_NORESERVE: a region of a
        // terabyte must not be charged against overcommit; reads see the
        // shared zero page.
        void *p = mmap((void *)base, length, atomic_load(&slots[i].prot),
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) break;
        uint64_t none = UINT64_MAX;
        atomic_compare_exchange_strong(&slots[i].fault_offset, &none, (uint64_t)(address - base));
        atomic_store(&slots[i].lost, 1);
        atomic_fetch_add(&epoch, 1);
        return;
    }
    // Not guest RAM: a real bug. Hand it to whoever had SIGBUS before (the
    // Swift runtime's backtracer, when enabled), or let the default action
    // kill the process when the faulting instruction runs again.
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction != NULL) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        sigaction(SIGBUS, &fallback, NULL);
    }
}

int vtdb_ram_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    // SA_NODEFER is not set: a second SIGBUS inside the handler (mmap
    // failing leaves the range as it was) must take the default action.
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous) != 0) {
        int e = errno;
        atomic_store(&installed, 0);
        return -e;
    }
    return 0;
}

int vtdb_ram_guard_register(void *base, size_t length, int prot) {
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t free_ = 0;
        // Claim the slot with a placeholder base first so that the handler
        // never sees a base without its length.
        if (atomic_compare_exchange_strong(&slots[i].base, &free_, (uintptr_t)1)) {
            atomic_store(&slots[i].length, 0);
            atomic_store(&slots[i].prot, prot);
            atomic_store(&slots[i].lost, 0);
            atomic_store(&slots[i].fault_offset, UINT64_MAX);
            atomic_store(&slots[i].length, length);
            atomic_store(&slots[i].base, (uintptr_t)base);
            return i;
        }
    }
    return -ENOSPC;
}

void vtdb_ram_guard_unregister(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    atomic_store(&slots[slot].length, 0);
    atomic_store(&slots[slot].base, 0);
}

int vtdb_ram_guard_lost(int slot) {
    if (slot < 0 || slot >= SLOTS) return 0;
    return atomic_load(&slots[slot].lost);
}

uint64_t vtdb_ram_guard_fault_offset(int slot) {
    if (slot < 0 || slot >= SLOTS) return UINT64_MAX;
    return atomic_load(&slots[slot].fault_offset);
}

uint64_t vtdb_ram_guard_epoch(void) { return atomic_load(&epoch); }

int vtdb_ram_guard_slots_in_use(void) {
    int n = 0;
    for (int i = 0; i < SLOTS; i++) n += atomic_load(&slots[i].base) != 0;
    return n;
}
