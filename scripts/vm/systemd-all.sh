#!/bin/sh
# In-VM, systemd profile: the two systemd scenario scripts in one boot (a
# boot of this profile costs 15-40 s under TCG). make vm-systemd-test adds
# both with --add; each prints its own summary line:
#   systemd-service.sh   "systemd: N passed, N failed"   the unit as shipped
#   systemd-restarts.sh  "systemd-restarts: N passed, N failed"   restarts
# The restart soak runs second: it needs both edu devices, which the first
# script's instances have released by then.
set -u
sh /vmtest/systemd-service.sh
first=$?
sh /vmtest/systemd-restarts.sh
second=$?
[ "$first" -eq 0 ] && [ "$second" -eq 0 ]
